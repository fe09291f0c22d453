"""The hook for the Stainless-generated SDKs: openai, anthropic and groq.

Every call of these clients (resource methods, ``parse``, the ``.stream()`` helpers,
``with_raw_response``, ``with_streaming_response``, beta resources) ends in one method,
``client.request()``, which retries internally and returns the parsed object, the ``Stream``,
or the raw response wrapper. ``wrap()`` swaps the client instance's class for a cached
subclass that overrides ``request()`` (and ``copy()``/``with_options()``, so copies stay
tracked), so ``isinstance`` and every overload the type checker sees stay the SDK's own.

With a credit gate, ``request()`` reserves the request's estimate before sending it (a refusal
raises :class:`InsufficientCreditsError` and nothing is sent), cancels the hold when the
request fails, and settles it with the usage recorded (streams: when the stream ends).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Mapping
from typing import Any

from ._anthropic import ANTHROPIC_ROUTES, MessageStreamUsage, usage_of_message
from ._gating import Admission, GatePolicy
from ._openai import (
    GROQ_ROUTES,
    INCLUDE_USAGE_OPERATIONS,
    OPENAI_ROUTES,
    provider_for_host,
    speech_usage,
    stream_accumulator,
    usage_of_object,
)
from ._streams import StreamAccumulator, StreamTap, tap_sdk_stream
from ._swap import swap_class
from ._tracker import Binding, Scope, logger, sdk_family
from ._usage import LLMUsage, field

__all__ = ["instrument_client"]

_RAW_RESPONSE_HEADER = "X-Stainless-Raw-Response"
#: Responses API objects that are not finished yet (``background=True``) carry no usage.
_PENDING_STATUSES = frozenset({"queued", "in_progress"})


class Call:
    """One billable request in flight."""

    __slots__ = ("admission", "hide", "model", "observed", "operation", "options", "raw", "scope")

    def __init__(
        self,
        operation: str,
        scope: Scope,
        model: str | None,
        hide: bool,
        raw: str | None,
        options: Any,
    ) -> None:
        self.operation = operation
        self.scope = scope
        self.model = model
        self.hide = hide
        self.raw = raw
        self.options = options
        self.observed = False
        self.admission: Admission | None = None


class ClientState:
    """Per wrapped client: its defaults, provider name and SDK family."""

    __slots__ = (
        "binding",
        "family",
        "gating",
        "injects",
        "provider",
        "routes",
        "stream_types",
        "warned",
    )

    def __init__(self, client: Any, binding: Binding) -> None:
        self.binding = binding
        self.gating: GatePolicy | None = binding.tracker._gating
        self.warned = False
        self.injects = binding.tracker.inject_stream_usage
        self.family = sdk_family(type(client)) or "openai"
        sdk = sys.modules[self.family]
        self.stream_types = (sdk.Stream, sdk.AsyncStream)
        if self.family == "anthropic":
            self.routes = ANTHROPIC_ROUTES
            self.provider = "anthropic"
        elif self.family == "groq":
            self.routes = GROQ_ROUTES
            self.provider = "groq"
        else:
            self.routes = OPENAI_ROUTES
            azure = any(base.__name__.startswith("Azure") for base in type(client).__mro__)
            self.provider = "azure_openai" if azure else provider_for_host(client.base_url.host)
            if azure and not _azure_takes_stream_options(getattr(client, "_api_version", None)):
                self.injects = False

    def start(self, options: Any, stream: bool) -> Call | None:
        """Decide whether a request is billable and prepare it. Never raises."""
        try:
            url: str = options.url
            query = url.find("?")
            operation = self.routes.get(url if query < 0 else url[:query])
            if operation is None or options.method.lower() != "post":
                return None
            scope = self.binding.resolve()
            if scope is None:
                return None
            headers = options.headers  # usually a dict, or a falsy NOT_GIVEN/Omit sentinel
            raw = (
                headers.get(_RAW_RESPONSE_HEADER)
                if headers and (type(headers) is dict or isinstance(headers, Mapping))
                else None
            )
            body = options.json_data
            model = body.get("model") if type(body) is dict or isinstance(body, Mapping) else None
            hide = False
            if (
                stream
                and raw is None
                and operation in INCLUDE_USAGE_OPERATIONS
                and self.injects
                and isinstance(body, Mapping)
            ):
                stream_options = body.get("stream_options")
                if not (
                    isinstance(stream_options, Mapping)
                    and stream_options.get("include_usage") is True
                ):
                    asked = stream_options if isinstance(stream_options, Mapping) else {}
                    options = options.model_copy(
                        update={
                            "json_data": {
                                **body,
                                "stream_options": {**asked, "include_usage": True},
                            }
                        }
                    )
                    hide = True
            call = Call(operation, scope, model, hide, raw, options)
            parser = options.post_parser
            if not stream and callable(parser):
                call.options = options.model_copy(
                    update={"post_parser": self.observe_on_raise(call, parser)}
                )
            return call
        except Exception as exc:
            self.binding.tracker._failure("could not inspect LLM request", exc)
            return None

    def _parts(self, call: Call) -> tuple[Any, Any, Any]:
        options = call.options
        extra = getattr(options, "extra_json", None)
        files = getattr(options, "files", None)
        return (
            options.json_data,
            extra if isinstance(extra, Mapping) else None,
            files if isinstance(files, (list, tuple, Mapping)) else None,
        )

    def admit(self, call: Call) -> None:
        """Reserve ``call``'s estimate (sync clients); raises the gate's refusals."""
        gating = self.gating
        assert gating is not None
        call.admission = gating.admit(
            call.scope.customer_id, call.operation, call.model, *self._parts(call)
        )

    async def admit_async(self, call: Call) -> None:
        """Reserve ``call``'s estimate (async clients); raises the gate's refusals."""
        gating = self.gating
        assert gating is not None
        call.admission = await gating.aadmit(
            call.scope.customer_id, call.operation, call.model, *self._parts(call)
        )

    def finish(self, call: Call, result: Any) -> None:
        """Record or tap what a sync ``request()`` returned. Never raises."""
        if call.operation == "audio.speech":
            self.speech(call, result)
            return
        try:
            if call.raw is None:
                self.observe(call, result)
            elif call.raw == "stream":
                _on_parse(result, lambda parsed: self.observe_safely(call, parsed))
            else:
                self.observe(call, result.parse())
        except Exception as exc:
            self.binding.tracker._failure("could not record LLM usage", exc)
        if call.admission is not None:
            self._settle_unobserved(call, result)

    async def finish_async(self, call: Call, result: Any) -> None:
        """Record or tap what an async ``request()`` returned. Never raises."""
        if call.operation == "audio.speech":
            self.speech(call, result)
            return
        try:
            if call.raw is None:
                self.observe(call, result)
            elif call.raw == "stream":
                _on_parse(result, lambda parsed: self.observe_safely(call, parsed))
            else:
                parsed = result.parse()
                if inspect.isawaitable(parsed):
                    parsed = await parsed
                self.observe(call, parsed)
        except Exception as exc:
            self.binding.tracker._failure("could not record LLM usage", exc)
        if call.admission is not None:
            self._settle_unobserved(call, result)

    def speech(self, call: Call, result: Any) -> None:
        """Record a text-to-speech request from its own text, however the caller reads the
        audio (raw bytes, a file, a streamed body): the request succeeded, its characters
        are billed. Never raises."""
        admission = call.admission
        try:
            headers = getattr(result, "headers", None)
            if headers is None:
                headers = getattr(getattr(result, "response", None), "headers", None)
            usage = speech_usage(self.provider, call.options.json_data, call.model, headers)
            if admission is not None:
                admission.settle(usage)
            if usage is not None:
                self.binding.tracker._emit(usage, call.scope)
        except Exception as exc:
            self.binding.tracker._failure("could not record LLM usage", exc)
        if admission is not None:
            admission.close()  # still open only when tracking failed: the estimate counts

    @staticmethod
    def _settle_unobserved(call: Call, result: Any) -> None:
        """After :meth:`finish`: a ``with_streaming_response`` body may be parsed later (or
        read as raw bytes, or never: then nothing is billed and the hold is released with no
        cost when the response is collected); any other hold still open means tracking
        failed, and its estimate counts."""
        admission = call.admission
        assert admission is not None
        if call.raw == "stream":
            admission.watch(result)
        else:
            admission.close()

    @staticmethod
    def failed(call: Call) -> None:
        """The request raised: release its hold with no cost (unless the usage of a response
        whose parsing raised was recorded first)."""
        if call.admission is not None:
            call.admission.cancel()

    def observe_on_raise(self, call: Call, parser: Any) -> Any:
        """Wrap the SDK's post-parser (``parse()`` helpers: structured output; embeddings) so
        that when it raises (a truncated or filtered answer), the usage of the unparsed
        response is recorded before the exception reaches the caller unchanged."""

        def observed_parser(response: Any) -> Any:
            try:
                return parser(response)
            except BaseException:
                self.observe_safely(call, response)
                call.observed = True
                raise

        return observed_parser

    def observe_safely(self, call: Call, obj: Any) -> None:
        """:meth:`observe` that logs and counts failures instead of raising."""
        try:
            self.observe(call, obj)
        except Exception as exc:
            self.binding.tracker._failure("could not record LLM usage", exc)

    def observe(self, call: Call, obj: Any) -> None:
        """Tap a stream, or record the usage of a response object (once per call)."""
        if call.observed:
            return
        tracker = self.binding.tracker
        if isinstance(obj, self.stream_types):
            headers = obj.response.headers
            accumulator: StreamAccumulator
            if self.family == "anthropic":
                accumulator = MessageStreamUsage(self.provider, call.operation, call.model, headers)
            else:
                accumulator = stream_accumulator(
                    self.provider, call.operation, call.model, call.hide, headers
                )
            admission = call.admission
            meter = None
            if admission is not None:
                meter = admission.meter(self.provider, call.operation, call.model, self.family)
            tap = StreamTap(accumulator, tracker, call.scope, admission, meter)
            if not tap_sdk_stream(obj, tap) and admission is not None:
                admission.handed_off = False  # tapped before: its cost stays unknown here
                admission.close()
            return
        admission = call.admission
        if isinstance(obj, str):  # transcriptions in text/srt/vtt formats carry no usage
            if admission is not None:
                admission.settle(None)
            return
        usage: LLMUsage | None
        if self.family == "anthropic":
            usage = usage_of_message(obj, self.provider, call.operation, call.model)
        else:
            usage = usage_of_object(obj, self.provider, call.operation, call.model, None)
        if admission is not None:
            admission.settle(usage)  # before recording: a failing sink must not keep the hold
        if usage is None:
            if field(obj, "status") in _PENDING_STATUSES:
                return  # a background response: bill it with tracker.track() once it is done
            tracker.stats._count_failure()
            if not self.warned:  # once per client; every such response is counted
                self.warned = True
                logger.warning(
                    "%s %s response without usage: not tracked", self.provider, call.operation
                )
            return
        tracker._emit(usage, call.scope)  # its failures are caught and counted by the callers


def _azure_takes_stream_options(api_version: object) -> bool:
    """Azure OpenAI accepts ``stream_options`` from api-version 2024-08-01-preview on (earlier
    versions answer 400); versions that are not dates (``preview``, ``latest``) are current."""
    if not isinstance(api_version, str) or not api_version[:4].isdigit():
        return True
    return api_version[:10] >= "2024-08-01"


_CLIENT_CLASSES: dict[type[Any], type[Any]] = {}
_PARSE_CLASSES: dict[type[Any], type[Any]] = {}


def instrument_client(client: Any, binding: Binding) -> None:
    """Make ``client`` (an openai/anthropic/groq client) report usage to ``binding``."""
    swap_class(client, "_dodo_metered", _CLIENT_CLASSES, _metered_class)
    client._dodo_state = ClientState(client, binding)


def _metered_class(base: type[Any]) -> type[Any]:
    cls: type[Any]
    if inspect.iscoroutinefunction(base.request):

        class AsyncMetered(base):  # type: ignore[misc]
            _dodo_metered = True

            async def request(
                self,
                cast_to: Any,
                options: Any,
                *,
                stream: bool = False,
                stream_cls: Any = None,
            ) -> Any:
                state: ClientState | None = self.__dict__.get("_dodo_state")
                call = state.start(options, stream) if state is not None else None
                if call is None:
                    return await super().request(
                        cast_to, options, stream=stream, stream_cls=stream_cls
                    )
                assert state is not None
                if state.gating is not None:
                    await state.admit_async(call)  # a refusal raises here: nothing is sent
                try:
                    result = await super().request(
                        cast_to, call.options, stream=stream, stream_cls=stream_cls
                    )
                except BaseException:
                    state.failed(call)
                    raise
                await state.finish_async(call, result)
                return result

            def copy(self, *args: Any, **kwargs: Any) -> Any:
                return _copied(self, super().copy(*args, **kwargs))

            with_options = copy

        cls = AsyncMetered
    else:

        class Metered(base):  # type: ignore[misc]
            _dodo_metered = True

            def request(
                self,
                cast_to: Any,
                options: Any,
                *,
                stream: bool = False,
                stream_cls: Any = None,
            ) -> Any:
                state: ClientState | None = self.__dict__.get("_dodo_state")
                call = state.start(options, stream) if state is not None else None
                if call is None:
                    return super().request(cast_to, options, stream=stream, stream_cls=stream_cls)
                assert state is not None
                if state.gating is not None:
                    state.admit(call)  # a refusal raises here: nothing is sent
                try:
                    result = super().request(
                        cast_to, call.options, stream=stream, stream_cls=stream_cls
                    )
                except BaseException:
                    state.failed(call)
                    raise
                state.finish(call, result)
                return result

            def copy(self, *args: Any, **kwargs: Any) -> Any:
                return _copied(self, super().copy(*args, **kwargs))

            with_options = copy

        cls = Metered
    _rename(cls, base)
    return cls


def _copied(original: Any, copy: Any) -> Any:
    state: ClientState | None = original.__dict__.get("_dodo_state")
    if state is not None:
        instrument_client(copy, state.binding)
    return copy


def _on_parse(response: Any, hook: Any) -> None:
    """Run ``hook`` on the first object a ``with_streaming_response`` response parses to."""
    swap_class(response, "_dodo_parse_hooked", _PARSE_CLASSES, _parse_hooked_class)
    response._dodo_on_parse = hook


def _parse_hooked_class(base: type[Any]) -> type[Any]:
    cls: type[Any]
    if inspect.iscoroutinefunction(base.parse):

        class AsyncParseHooked(base):  # type: ignore[misc]
            _dodo_parse_hooked = True

            async def parse(self, **kwargs: Any) -> Any:
                parsed = await super().parse(**kwargs)
                hook = self.__dict__.pop("_dodo_on_parse", None)
                if hook is not None:
                    hook(parsed)
                return parsed

        cls = AsyncParseHooked
    else:

        class ParseHooked(base):  # type: ignore[misc]
            _dodo_parse_hooked = True

            def parse(self, **kwargs: Any) -> Any:
                parsed = super().parse(**kwargs)
                hook = self.__dict__.pop("_dodo_on_parse", None)
                if hook is not None:
                    hook(parsed)
                return parsed

        cls = ParseHooked
    _rename(cls, base)
    return cls


def _rename(cls: type[Any], base: type[Any]) -> None:
    cls.__name__ = base.__name__
    cls.__qualname__ = base.__qualname__
    cls.__module__ = base.__module__
