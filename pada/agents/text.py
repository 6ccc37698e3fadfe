"""Text helpers shared by the agents' prompt builders."""


def truncate(text: str, limit: int) -> str:
    """Cut `text` to about `limit` characters, keeping head and tail (a prompt often ends with its question)."""
    text = text.strip()
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    return f"{text[:head]}\n[... {len(text) - limit} characters cut ...]\n{text[head - limit:]}"
