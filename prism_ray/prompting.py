"""The one response format every stage uses (PRISM_SPEC §2): system prompt and segment parser."""

from __future__ import annotations

import re

SYSTEM_PROMPT = (
    "You are a helpful scientific assistant.\n"
    "Answer the user's question based on the image provided.\n"
    "\n"
    "Your output must strictly follow this XML format:\n"
    "\n"
    "<caption>\n"
    "- [Briefly describe the image style, key objects, and text using bullet points]\n"
    "</caption>\n"
    "<think>\n"
    "[Reason step-by-step to solve the problem]\n"
    "</think>\n"
    "<answer>\n"
    "[Final answer ONLY]\n"
    "</answer>"
)

IMAGE_PLACEHOLDER = "<image>"

# Group 1: caption segment (perception). Group 2: reasoning segment (think + answer).
FORMAT_PATTERN = re.compile(
    r"^\s*(<caption>.*?</caption>)\s*(<think>.*?</think>\s*<answer>.*?</answer>)\s*$", re.DOTALL
)


def format_response(caption_lines: list[str], reasoning: str, answer: str) -> str:
    """Render a response in the canonical XML format (used by the teacher and the demonstrations)."""
    bullets = "\n".join(f"- {line}" for line in caption_lines)
    return f"<caption>\n{bullets}\n</caption>\n<think>\n{reasoning}\n</think>\n<answer>\n{answer}\n</answer>"
