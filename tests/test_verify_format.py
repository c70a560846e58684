import time

from hypothesis import given, settings
from hypothesis import strategies as st

from prism_ray.prompting import FORMAT_PATTERN, format_response
from prism_ray.verify import answer_block, check_format, extract_answer, has_format_tag

TAGS = ["<caption>", "</caption>", "<think>", "</think>", "<answer>", "</answer>", " ", "\n", "x"]
_soup = st.lists(st.sampled_from([*TAGS, "</caption><think>", "</think>\n<answer>"]), max_size=10)


def test_valid_response_segments_and_spans():
    response = "  " + format_response(["a red cube"], "count it", "3") + "\n"
    result = check_format(response)
    assert result.ok
    assert result.caption == "<caption>\n- a red cube\n</caption>"
    assert result.reasoning.startswith("<think>") and result.reasoning.endswith("</answer>")
    start, end = result.caption_span
    assert response[start:end] == result.caption
    start, end = result.reasoning_span
    assert response[start:end] == result.reasoning


def test_invalid_responses():
    assert not check_format("").ok
    assert not check_format("<think>t</think><answer>1</answer>").ok  # no caption
    assert not check_format("<caption>c</caption><answer>1</answer>").ok  # no think
    assert not check_format("<caption>c</caption><think>t</think><answer>1</answer> trailing").ok
    assert (
        check_format("<caption>c</caption><think>t</think><answer>1</answer>").caption_span
        is not None
    )
    assert check_format("nope").caption is None


@settings(max_examples=400, deadline=None)
@given(st.booleans(), _soup, st.booleans(), st.booleans())
def test_linear_gate_agrees_with_the_spec_regex(open_caption, middle, close_answer, pad):
    text = ("<caption>" if open_caption else "") + "".join(middle)
    text += ("</answer>" if close_answer else "") + (" \n" if pad else "")
    assert check_format(text).ok == (FORMAT_PATTERN.match(text) is not None)


def test_looping_response_is_rejected_fast():
    # the bare regex needs minutes on this (backtracking over every tag combination)
    looping = "<caption>x" + "</caption><think>t</think><answer>A</answer>" * 2000 + "x"
    started = time.monotonic()
    assert not check_format(looping).ok
    assert time.monotonic() - started < 1.0


def test_megabyte_valid_response_is_accepted_fast():
    response = format_response(["x" * 500_000], "y" * 500_000, "42")
    started = time.monotonic()
    assert check_format(response).ok
    assert time.monotonic() - started < 2.0


def test_extraction_first_pair_and_nested_tags():
    assert extract_answer("<answer> 5 </answer>") == " 5 "
    assert extract_answer("<answer>4</answer><answer>5</answer>") == "4"
    assert extract_answer("<answer>4<answer>5</answer>") == "4<answer>5"
    assert extract_answer("no tags") is None
    assert extract_answer("<answer>unclosed") is None
    assert has_format_tag("4<answer>5") and has_format_tag("5 </think>")
    assert not has_format_tag("45 < 50 > 3")


def test_answer_block_skips_answers_drafted_in_think():
    reasoning = "<think>maybe <answer>7</answer></think>\n<answer>5</answer>"
    assert extract_answer(answer_block(reasoning)) == "5"
