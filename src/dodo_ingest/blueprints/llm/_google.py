"""google-genai: hook the per-HTTP-request methods of ``client.models`` and ``client.aio.models``.

The public ``generate_content`` may send several requests (automatic function calling, one
per step; automatic continuation, one per hop) and returns the usage of the last one only.
The private ``_generate_content``, ``_generate_content_stream`` and ``_embed_content`` run
once per HTTP request, so hooking them bills every request exactly once; chats go through the
same ``models`` instances. Image generation (``_generate_images``, ``_edit_image``,
``_upscale_image``, ``recontext_image``: one request each) is billed per image returned. The
instances' classes are swapped for cached subclasses.

With a credit gate, each of those per-request methods reserves its request's estimate before
the request is sent (so every step of an automatic-function-calling loop and every
continuation hop is admitted on its own), and settles it with the usage recorded.
"""

from __future__ import annotations

import hashlib
import inspect
from typing import Any

from ._event_ids import keyed, keyed_once, object_key
from ._gating import GOOGLE_IMAGE_OPERATIONS, Admission, GatePolicy
from ._streams import StreamTap, tap_async_iterator, tap_iterator
from ._swap import swap_class
from ._tracker import Binding, Scope
from ._usage import LLMUsage, field, gemini_usage, gemini_usage_from_body

__all__ = [
    "IMAGE_OPERATIONS",
    "GenerateStreamUsage",
    "add_grounding",
    "images_usage",
    "instrument_client",
]

#: The image methods of ``Models``/``AsyncModels`` (one HTTP request each) and the operation
#: each bills.
_IMAGE_METHODS = {
    "_generate_images": "generate_images",
    "_edit_image": "edit_image",
    "_upscale_image": "upscale_image",
    "recontext_image": "recontext_image",
}
#: The image operations, by the SDK's response type (what ``tracker.track()`` accepts).
IMAGE_OPERATIONS = {
    "GenerateImagesResponse": "generate_images",
    "EditImageResponse": "edit_image",
    "UpscaleImageResponse": "upscale_image",
    "RecontextImageResponse": "recontext_image",
}


def _has_image(generated: Any) -> bool:
    """True when a ``GeneratedImage`` carries an image (bytes or a Cloud Storage URI); one the
    safety filter withheld carries only its reason."""
    image = field(generated, "image")
    return bool(field(image, "image_bytes") or field(image, "gcs_uri"))


def images_usage(result: Any, provider: str, operation: str, model: str | None) -> LLMUsage | None:
    """The usage of an image response: ``imagesGenerated``, the images it returns (those the
    safety filter withheld carry no image and are not counted); ``None`` when it returns
    none."""
    generated = [image for image in field(result, "generated_images") or () if _has_image(image)]
    if not generated:
        return None
    # No response id: the key of the first image object, which the response the public
    # method returns shares with the one the hook saw (tracking it again bills nothing).
    usage = LLMUsage(provider, operation, model, response_id=f"images_{object_key(generated[0])}")
    usage.fees = {"imagesGenerated": len(generated)}
    return usage


class ModelsState:
    """Per wrapped ``Models``/``AsyncModels`` instance: defaults and provider name."""

    __slots__ = ("binding", "gating", "provider")

    def __init__(self, binding: Binding, provider: str) -> None:
        self.binding = binding
        self.provider = provider
        self.gating: GatePolicy | None = binding.tracker._gating

    def admit(
        self, scope: Scope | None, kwargs: dict[str, Any], operation: str
    ) -> Admission | None:
        """Reserve the request's estimate (sync); raises the gate's refusals."""
        if scope is None or self.gating is None:
            return None
        return self.gating.admit(scope.customer_id, operation, _model_name(kwargs), kwargs)

    async def admit_async(
        self, scope: Scope | None, kwargs: dict[str, Any], operation: str
    ) -> Admission | None:
        """Reserve the request's estimate (async); raises the gate's refusals."""
        if scope is None or self.gating is None:
            return None
        return await self.gating.aadmit(scope.customer_id, operation, _model_name(kwargs), kwargs)

    def record(
        self,
        scope: Scope,
        result: Any,
        kwargs: dict[str, Any],
        operation: str,
        admission: Admission | None = None,
    ) -> None:
        """Record the usage of one response (and settle its hold). Never raises."""
        tracker = self.binding.tracker
        try:
            if operation in GOOGLE_IMAGE_OPERATIONS:  # billed per image; none: not billable
                images = images_usage(result, self.provider, operation, _model_name(kwargs))
                if admission is not None:
                    admission.settle(images)
                if images is not None:
                    tracker.record(images, scope)
                return
            usage = field(result, "usage_metadata")
            if usage is None:
                usage = gemini_usage_from_body(field(field(result, "sdk_http_response"), "body"))
            if usage is None and operation == "embed_content":
                usage = _vertex_embedding_usage(result)
            if usage is None:
                if admission is not None:
                    admission.settle(None)
                tracker._failure(f"google {operation} response without usage: not tracked", None)
                return
            normalised = gemini_usage(
                usage,
                self.provider,
                operation,
                field(result, "model_version") or _model_name(kwargs),
                _response_key(field(result, "response_id"), kwargs),
            )
            add_grounding(normalised, result)
            keyed(normalised, result)
            if admission is not None:
                admission.settle(normalised)
            tracker.record(normalised, scope)
        except Exception as exc:
            tracker._failure("could not record LLM usage", exc)
        if admission is not None:
            admission.close()  # still open only when tracking failed: the estimate counts

    def stream_tap(
        self, scope: Scope, kwargs: dict[str, Any], admission: Admission | None = None
    ) -> StreamTap | None:
        """A tap for one streamed request. Never raises."""
        try:
            model = _model_name(kwargs)
            accumulator = GenerateStreamUsage(self.provider, model, _continuation(kwargs))
            meter = None
            if admission is not None:
                meter = admission.meter(self.provider, "generate_content", model, "google")
            return StreamTap(accumulator, self.binding.tracker, scope, admission, meter)
        except Exception as exc:
            self.binding.tracker._failure("could not record LLM usage", exc)
            if admission is not None:
                admission.handed_off = False
                admission.close()
            return None


class GenerateStreamUsage:
    """``usage_metadata`` of each chunk is a running total: keep the last, never sum."""

    __slots__ = (
        "continuation",
        "final",
        "grounded",
        "model",
        "provider",
        "response_id",
        "usage",
    )

    def __init__(self, provider: str, model: str | None, continuation: bytes | None) -> None:
        self.provider = provider
        self.model = model
        self.continuation = continuation
        self.response_id: str | None = None
        self.usage: Any = None
        self.grounded: Any = None
        self.final = False

    def observe(self, chunk: Any) -> bool:
        if not self.response_id:
            self.response_id = chunk.response_id or None
            self.model = chunk.model_version or self.model
        usage = chunk.usage_metadata
        if usage is not None:
            self.usage = usage
        candidates = chunk.candidates
        if candidates:
            if candidates[0].grounding_metadata is not None:
                self.grounded = chunk
            if candidates[0].finish_reason is not None:
                self.final = True
        return False

    def result(self, exhausted: bool) -> LLMUsage | None:
        if self.usage is None:
            return None
        usage = gemini_usage(
            self.usage,
            self.provider,
            "generate_content",
            self.model,
            _response_key(self.response_id, None, self.continuation),
            self.final or exhausted,
        )
        if self.grounded is not None:
            add_grounding(usage, self.grounded)
        return keyed_once(usage)


def add_grounding(usage: LLMUsage, response: Any) -> None:
    """Count the Google Search queries a grounded response ran (``groundingQueries``: the
    ``web_search_queries`` of its candidates' grounding metadata), billed per query."""
    queries = 0
    for candidate in field(response, "candidates") or ():
        grounding = field(candidate, "grounding_metadata")
        if grounding is not None:
            queries += len(field(grounding, "web_search_queries") or ())
    if queries:
        usage.fees = {**(usage.fees or {}), "groundingQueries": queries}


def _model_name(kwargs: dict[str, Any]) -> str | None:
    model = kwargs.get("model")
    if not isinstance(model, str):
        return None
    return model.rpartition("/")[2]


def _continuation(kwargs: dict[str, Any] | None) -> bytes | None:
    config = kwargs.get("config") if kwargs else None
    token = field(config, "continuation_token")
    return token if isinstance(token, bytes) else None


def _response_key(
    response_id: str | None, kwargs: dict[str, Any] | None, continuation: bytes | None = None
) -> str | None:
    """The response id, made unique per continuation hop (hops may share a response id)."""
    if response_id is None:
        return None
    token = continuation if continuation is not None else _continuation(kwargs)
    if token is None:
        return response_id
    return f"{response_id}#{hashlib.blake2b(token, digest_size=8).hexdigest()}"


def _vertex_embedding_usage(result: Any) -> dict[str, int] | None:
    counts = [
        field(field(embedding, "statistics"), "token_count")
        for embedding in field(result, "embeddings") or ()
    ]
    if not counts or any(c is None for c in counts):
        return None
    return {"prompt_token_count": int(sum(counts))}


async def _aclose_stream(inner: Any) -> None:
    """Close an async stream cut off by the credit gate, and its HTTP response now.

    google-genai's async stream nests generators around an ``HttpResponse`` that refers to
    its own generator: closing the outer generator leaves the HTTP response open until the
    cyclic garbage collector runs, and the model generating. Its response is found in the
    generators' frames (``response_stream`` -> ``response`` -> ``response_stream``) and closed
    first; when the SDK's layout differs, only the generator is closed. Never raises.
    """
    http: Any = None
    try:
        stream = inner.ag_frame.f_locals.get("response_stream")
        wrapper = stream.ag_frame.f_locals.get("response")
        http = getattr(wrapper, "response_stream", None)
    except Exception:
        http = None
    for closeable in (http, inner):
        try:
            aclose = getattr(closeable, "aclose", None)
            if aclose is not None:
                await aclose()
        except Exception:
            pass


_MODELS_CLASSES: dict[type[Any], type[Any]] = {}


def instrument_client(client: Any, binding: Binding) -> None:
    """Make a ``genai.Client`` (both surfaces) or a ``client.aio`` report usage."""
    api_client = client._api_client
    provider = "google_vertex" if api_client.vertexai else "google"
    surfaces = [client.models]
    aio = getattr(client, "aio", None)
    if aio is not None and aio is not client:
        surfaces.append(aio.models)
    for models in surfaces:
        swap_class(models, "_dodo_metered", _MODELS_CLASSES, _metered_models_class)
        models._dodo_state = ModelsState(binding, provider)


def _metered_models_class(base: type[Any]) -> type[Any]:
    cls: type[Any]
    if inspect.iscoroutinefunction(base._generate_content):

        class AsyncMetered(base):  # type: ignore[misc]
            _dodo_metered = True

            async def _generate_content(self, **kwargs: Any) -> Any:
                state: ModelsState | None = self.__dict__.get("_dodo_state")
                if state is None:
                    return await super()._generate_content(**kwargs)
                scope = state.binding.resolve()
                admission = await state.admit_async(scope, kwargs, "generate_content")
                try:
                    result = await super()._generate_content(**kwargs)
                except BaseException:
                    if admission is not None:
                        admission.cancel()
                    raise
                if scope is not None:
                    state.record(scope, result, kwargs, "generate_content", admission)
                return result

            async def _generate_content_stream(self, **kwargs: Any) -> Any:
                state: ModelsState | None = self.__dict__.get("_dodo_state")
                if state is None:
                    return await super()._generate_content_stream(**kwargs)
                scope = state.binding.resolve()
                admission = await state.admit_async(scope, kwargs, "generate_content")
                try:
                    inner = await super()._generate_content_stream(**kwargs)
                except BaseException:
                    if admission is not None:
                        admission.cancel()
                    raise
                if scope is None:
                    return inner
                tap = state.stream_tap(scope, kwargs, admission)
                return inner if tap is None else tap_async_iterator(inner, tap, _aclose_stream)

            async def _embed_content(self, **kwargs: Any) -> Any:
                state: ModelsState | None = self.__dict__.get("_dodo_state")
                if state is None:
                    return await super()._embed_content(**kwargs)
                scope = state.binding.resolve()
                admission = await state.admit_async(scope, kwargs, "embed_content")
                try:
                    result = await super()._embed_content(**kwargs)
                except BaseException:
                    if admission is not None:
                        admission.cancel()
                    raise
                if scope is not None:
                    state.record(scope, result, kwargs, "embed_content", admission)
                return result

        cls = AsyncMetered
    else:

        class Metered(base):  # type: ignore[misc]
            _dodo_metered = True

            def _generate_content(self, **kwargs: Any) -> Any:
                state: ModelsState | None = self.__dict__.get("_dodo_state")
                if state is None:
                    return super()._generate_content(**kwargs)
                scope = state.binding.resolve()
                admission = state.admit(scope, kwargs, "generate_content")
                try:
                    result = super()._generate_content(**kwargs)
                except BaseException:
                    if admission is not None:
                        admission.cancel()
                    raise
                if scope is not None:
                    state.record(scope, result, kwargs, "generate_content", admission)
                return result

            def _generate_content_stream(self, **kwargs: Any) -> Any:
                state: ModelsState | None = self.__dict__.get("_dodo_state")
                if state is None:
                    return super()._generate_content_stream(**kwargs)
                scope = state.binding.resolve()
                admission = state.admit(scope, kwargs, "generate_content")
                try:
                    inner = super()._generate_content_stream(**kwargs)
                except BaseException:
                    if admission is not None:
                        admission.cancel()
                    raise
                if scope is None:
                    return inner
                tap = state.stream_tap(scope, kwargs, admission)
                return inner if tap is None else tap_iterator(inner, tap)

            def _embed_content(self, **kwargs: Any) -> Any:
                state: ModelsState | None = self.__dict__.get("_dodo_state")
                if state is None:
                    return super()._embed_content(**kwargs)
                scope = state.binding.resolve()
                admission = state.admit(scope, kwargs, "embed_content")
                try:
                    result = super()._embed_content(**kwargs)
                except BaseException:
                    if admission is not None:
                        admission.cancel()
                    raise
                if scope is not None:
                    state.record(scope, result, kwargs, "embed_content", admission)
                return result

        cls = Metered
    asynchronous = inspect.iscoroutinefunction(base._generate_content)
    for name, operation in _IMAGE_METHODS.items():
        original = getattr(base, name, None)
        if original is not None:
            maker = _async_images_method if asynchronous else _images_method
            setattr(cls, name, maker(original, operation))
    cls.__name__ = base.__name__
    cls.__qualname__ = base.__qualname__
    cls.__module__ = base.__module__
    return cls


def _images_method(original: Any, operation: str) -> Any:
    """``original`` (a sync image method of ``Models``), billed per image returned."""

    def method(self: Any, **kwargs: Any) -> Any:
        state: ModelsState | None = self.__dict__.get("_dodo_state")
        if state is None:
            return original(self, **kwargs)
        scope = state.binding.resolve()
        admission = state.admit(scope, kwargs, operation)
        try:
            result = original(self, **kwargs)
        except BaseException:
            if admission is not None:
                admission.cancel()
            raise
        if scope is not None:
            state.record(scope, result, kwargs, operation, admission)
        return result

    method.__name__ = method.__qualname__ = original.__name__
    return method


def _async_images_method(original: Any, operation: str) -> Any:
    """``original`` (an async image method of ``AsyncModels``), billed per image returned."""

    async def method(self: Any, **kwargs: Any) -> Any:
        state: ModelsState | None = self.__dict__.get("_dodo_state")
        if state is None:
            return await original(self, **kwargs)
        scope = state.binding.resolve()
        admission = await state.admit_async(scope, kwargs, operation)
        try:
            result = await original(self, **kwargs)
        except BaseException:
            if admission is not None:
                admission.cancel()
            raise
        if scope is not None:
            state.record(scope, result, kwargs, operation, admission)
        return result

    method.__name__ = method.__qualname__ = original.__name__
    return method
