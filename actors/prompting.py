"""Between the engine and the environment, in one place: the chat template that turns an
observation into prompt token ids. (Action extraction from the reply lives in ``envs.actions``
and is applied by the environment's ``step``; the system prompt is the environment's own,
``env.system_prompt``.)

Each turn is one user message holding the whole observation: the environment already writes the
rules, the history and the legal actions into it, so prompts do not grow by accumulated chat, and
the shared rules prefix is reused by the engine's prefix cache.
"""

from __future__ import annotations

from typing import Any


def chat_messages(observation: str, system: str | None) -> list[dict[str, str]]:
    """The chat for one turn."""
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": observation})
    return messages


def prompt_ids(tokenizer: Any, observation: str, system: str | None) -> list[int]:
    """Token ids of the chat prompt for one turn, ending with the assistant's generation prompt.

    Falls back to the raw observation for tokenizers without a chat template (base models).
    """
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(chat_messages(observation, system),
                                            add_generation_prompt=True, tokenize=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):  # some versions return a BatchEncoding
            ids = ids["input_ids"]
        return list(ids)
    return list(tokenizer(observation).input_ids)
