"""Event ids of LLM usage events: the same for the same response, unique per call.

The id is ``llm_`` + a BLAKE2b-160 hash of the API family, the provider's response id, the
event name and (when known) the response's creation time. A response id is hashed alone only
when it is *known to be unique*: at least 16 characters after its type prefix (``chatcmpl-``,
``resp_``, ``msg_``), letters among them. OpenAI, Azure, Groq, Anthropic, Gemini, vLLM, llama.cpp,
OpenRouter, DeepSeek, Mistral and Together ids are. Other ids (Ollama's ``chatcmpl-<0..998>``,
counters, timestamps) are hashed with a random key drawn once per response object (or
stream), so two calls never share an id while billing the same object again (the wrapped
client, then ``tracker.track()``; a delivery retry) still gives the same one.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import threading
import uuid
import weakref

from ._usage import LLMUsage

__all__ = [
    "MIN_UNIQUE_ID_LENGTH",
    "Identity",
    "api_family",
    "event_id",
    "identity_of",
    "keyed",
    "keyed_once",
    "new_key",
    "object_key",
    "trusted_response_id",
]

_HASH = hashlib.blake2b(digest_size=20)
#: The API family of each non-OpenAI-shaped operation (every other one is ``openai``).
_OPERATION_FAMILIES = {
    "messages": "anthropic",
    "generate_content": "google",
    "embed_content": "google",
    "generate_images": "google",
    "edit_image": "google",
    "upscale_image": "google",
    "recontext_image": "google",
}
#: Characters a response id needs after its type prefix to be trusted as unique.
MIN_UNIQUE_ID_LENGTH = 16
_LETTER = re.compile("[A-Za-z]")

#: What an event id hashes besides the API family and the event name: the response id, its
#: creation time, the call key and whether the record is complete.
Identity = tuple[str, float | None, str | None, bool]

_PROCESS_TOKEN = uuid.uuid4().hex
_counter = itertools.count()
_keys: dict[int, _KeyRef] = {}
_keys_lock = threading.Lock()


def trusted_response_id(response_id: str) -> bool:
    """True when ``response_id`` is long and random enough to be unique per response: at
    least 16 characters after a leading ``letters-``/``letters_`` prefix, letters among them
    (not only digits: counters, timestamps)."""
    dash = response_id.find("-")
    under = response_id.find("_")
    cut = dash if under < 0 or 0 <= dash < under else under
    if cut > 0 and response_id[:cut].isalpha():
        if len(response_id) - cut <= MIN_UNIQUE_ID_LENGTH:
            return False
        start = cut + 1
    elif len(response_id) < MIN_UNIQUE_ID_LENGTH:
        return False
    else:
        start = 0
    # a letter at either end settles it at once (almost every random id); else look inside
    return (
        response_id[-1].isalpha()
        or response_id[start].isalpha()
        or _LETTER.search(response_id, start) is not None
    )


def new_key() -> str:
    """A key no other call of any process shares: this process's random token and a
    counter (cheaper than a random draw per call)."""
    return f"{_PROCESS_TOKEN}.{next(_counter)}"


class _KeyRef(weakref.ref):  # type: ignore[type-arg]
    """A weak reference to an object that carries the object's key and id."""

    __slots__ = ("ident", "key")
    ident: int
    key: str


def object_key(obj: object) -> str:
    """A key drawn once per live object (the same key for the same object, from any
    thread); a fresh one for objects that cannot be weakly referenced."""
    ident = id(obj)
    ref = _keys.get(ident)
    if ref is not None and ref() is obj:
        return ref.key
    try:
        ref = _KeyRef(obj, _forget)
    except TypeError:
        return new_key()
    ref.ident = ident
    ref.key = new_key()
    with _keys_lock:
        known = _keys.get(ident)
        if known is not None and known() is obj:  # another thread was first
            return known.key
        _keys[ident] = ref
    return ref.key


def _forget(ref: _KeyRef) -> None:
    with _keys_lock:
        if _keys.get(ref.ident) is ref:
            del _keys[ref.ident]


def keyed(usage: LLMUsage | None, obj: object) -> LLMUsage | None:
    """``usage`` with the key of ``obj`` when its response id is not trusted (see the module
    doc)."""
    if usage is not None:
        response_id = usage.response_id
        if response_id is not None and (
            type(response_id) is not str or not trusted_response_id(response_id)
        ):
            usage.call_key = object_key(obj)
    return usage


def keyed_once(usage: LLMUsage | None) -> LLMUsage | None:
    """``usage`` with a fresh key when its response id is not trusted: for a record made once
    per call (a stream's)."""
    if usage is not None:
        response_id = usage.response_id
        if response_id is not None and (
            type(response_id) is not str or not trusted_response_id(response_id)
        ):
            usage.call_key = new_key()
    return usage


def api_family(operation: str) -> str:
    """The API family event ids hash for ``operation``: ``openai``, ``anthropic``, ``google``."""
    return _OPERATION_FAMILIES.get(operation, "openai")


def identity_of(usage: LLMUsage) -> Identity:
    """What the event ids of ``usage`` (which has a response id) hash besides the API family
    and the event name."""
    assert usage.response_id is not None
    return (usage.response_id, usage.created, usage.call_key, usage.complete)


def event_id(usage: LLMUsage, event_name: str, identity: Identity | None = None) -> str:
    """The id of the event named ``event_name`` for ``usage``; random without a response id.

    The API family (by operation: ``openai`` for every OpenAI-shaped API, Groq and
    OpenAI-compatible servers included; ``anthropic``; ``google``) is hashed rather than the
    provider name, which manual tracking cannot know. Incomplete records hash an extra
    marker: their ids never take the id the finished response's bill (e.g. a later
    ``track(responses.retrieve(id))``) needs. ``identity`` replaces what ``usage`` would
    hash besides the family and the name: the other path's, for the same call billed twice
    (see ``_billed``).
    """
    if identity is None:
        response_id = usage.response_id
        if response_id is None:
            return f"llm_{uuid.uuid4().hex}"
        created = usage.created
        call_key = usage.call_key
        complete = usage.complete
    else:
        response_id, created, call_key, complete = identity
    digest = _HASH.copy()  # cheaper than building a new hash object
    family = _OPERATION_FAMILIES.get(usage.operation, "openai")
    key = f"{family}\x1f{response_id}\x1f{event_name}"
    if created is not None:
        key += f"\x1f{created!r}"
    if call_key is not None:
        key += f"\x1fcall:{call_key}"
    if not complete:
        key += "\x1fincomplete"
    digest.update(key.encode())
    return "llm_" + digest.hexdigest()
