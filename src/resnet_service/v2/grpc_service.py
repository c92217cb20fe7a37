"""The Open Inference Protocol v2 over gRPC, on RESNET_GRPC_PORT: the HTTP routes' models, queue, deadlines,
keys and errors.

The messages and the service are the protocol's own (package ``inference``, service ``GRPCInferenceService``),
as tritonclient's generated modules carry them: KServe's ``grpc_predict_v2.proto``, which Triton's
``grpc_service.proto`` extends, so KServe's and Triton's gRPC clients both work. The six methods of KServe's
protocol are served, and Triton's model repository extension (RepositoryIndex, RepositoryModelLoad,
RepositoryModelUnload) as over HTTP, with the same keys; Triton's other extra methods answer UNIMPLEMENTED.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar

import grpc
import numpy as np
from opentelemetry import trace
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc as pb_grpc

from resnet_service.core.errors import InvalidInferenceRequest, ModelNotFound, StartupError
from resnet_service.core.tracing import REQUEST_ID_ATTRIBUTE, Tracing
from resnet_service.core.version import __version__
from resnet_service.inference.model_repository import ModelRepository
from resnet_service.v2.inference import answer, check_version, classify_tensors, describe_model, repository_index
from resnet_service.v2.messages import InferenceRequest, RequestInput, RequestOutput, serialize_bytes
from resnet_service.web.auth import check_key
from resnet_service.web.error_answers import failure_of
from resnet_service.web.observe import Exchange, RequestStats, record
from resnet_service.web.request_id import accepted_request_id
from resnet_service.web.runtime import Runtime
from resnet_service.web.upload import MULTIPART_OVERHEAD_BYTES

__all__ = ["GRPC_STATUS", "InferenceServicer", "start_grpc_server"]

logger = logging.getLogger(__name__)

# The service's HTTP statuses as gRPC codes, as gRPC's own HTTP mapping reads them.
GRPC_STATUS: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    499: grpc.StatusCode.CANCELLED,
    500: grpc.StatusCode.INTERNAL,
    502: grpc.StatusCode.UNAVAILABLE,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}

Request = TypeVar("Request")
Response = TypeVar("Response")
Method = Callable[[Any, Request, grpc.aio.ServicerContext], Awaitable[Response]]


# The figures of the call in progress, for its access line; each gRPC call runs in its own task.
_call_stats: ContextVar[RequestStats] = ContextVar("grpc_call_stats")


def _metadata(context: grpc.aio.ServicerContext, key: str) -> str | None:
    return next((v for k, v in context.invocation_metadata() or () if k == key and isinstance(v, str)), None)


def _peer_ip(peer: str) -> str | None:
    """``ipv4:10.0.0.7:51234`` or ``ipv6:[::1]:51234`` → the address alone."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    return None


def _answers_errors(method: Method[Request, Response]) -> Method[Request, Response]:
    """Each call's errors as gRPC statuses, its metrics and its access line, as ObserveMiddleware does for HTTP.

    Failures are classified by ``web.error_answers.failure_of``, as HTTP's are, and answered as their gRPC status.
    """
    route = f"/inference.GRPCInferenceService/{method.__name__}"

    @functools.wraps(method)
    async def observed(self: Any, request: Request, context: grpc.aio.ServicerContext) -> Response:
        started, stats, status, sent = time.perf_counter(), RequestStats(), 500, 0
        _call_stats.set(stats)
        request_id = accepted_request_id(_metadata(context, "x-request-id"))
        if self.runtime.tracing is not None:
            trace.get_current_span().set_attribute(REQUEST_ID_ATTRIBUTE, request_id)
        # Counted with HTTP's: the autoscaling overlays scale on this gauge, whichever transport brings the load.
        self.runtime.metrics.in_flight.inc()
        try:
            response = await method(self, request, context)
            status, sent = 200, response.ByteSize()
            return response
        except Exception as exc:  # classified as HTTP's are; the traceback goes to the log, never to the client
            failure = failure_of(exc, f"gRPC {method.__name__}", request_id)
            status = failure.status
            await context.abort(GRPC_STATUS.get(failure.status, grpc.StatusCode.UNKNOWN), failure.message)
        finally:
            self.runtime.metrics.in_flight.dec()
            exchange = Exchange("GRPC", route, route, status, request_id)
            size = request.ByteSize()
            seconds = time.perf_counter() - started
            record(self.runtime.metrics, exchange, seconds, stats, size, sent, _peer_ip(context.peer()))
        raise AssertionError("context.abort always raises")

    return observed


def _parameter(value: pb.InferParameter) -> object:
    choice = value.WhichOneof("parameter_choice")
    return getattr(value, choice) if choice is not None else None


def _uint8_bytes(name: str, values: Sequence[int]) -> bytes:
    """The protocol carries UINT8 contents as uint32s: refuse any that would wrap around."""
    array = np.asarray(values, dtype=np.uint32)
    if array.size and int(array.max()) > 255:
        raise InvalidInferenceRequest(f"input '{name}': UINT8 contents must be from 0 to 255")
    return array.astype(np.uint8).tobytes()


def _parsed(request: pb.ModelInferRequest) -> tuple[InferenceRequest, dict[str, bytes | None]]:
    """The protobuf request as the HTTP route parses its JSON: the tensors, and each one's bytes."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise InvalidInferenceRequest(f"raw_input_contents has {len(raw)} entries for {len(request.inputs)} inputs")
    inputs, sections = [], {}
    for index, tensor in enumerate(request.inputs):
        inputs.append(RequestInput(name=tensor.name, shape=list(tensor.shape), datatype=tensor.datatype))
        if raw:
            sections[tensor.name] = raw[index]
        elif tensor.datatype == "BYTES":
            sections[tensor.name] = serialize_bytes(list(tensor.contents.bytes_contents))
        elif tensor.datatype == "UINT8":
            sections[tensor.name] = _uint8_bytes(tensor.name, tensor.contents.uint_contents)
        else:
            sections[tensor.name] = np.asarray(tensor.contents.fp32_contents, dtype="<f4").tobytes()
    if not inputs:
        raise InvalidInferenceRequest("send one input, 'image' or 'input'")
    outputs = [
        RequestOutput(name=output.name, parameters={k: _parameter(v) for k, v in output.parameters.items()})
        for output in request.outputs
    ]
    return InferenceRequest(id=request.id or None, inputs=inputs, outputs=outputs or None), sections


def _bearer(context: grpc.aio.ServicerContext) -> str | None:
    value = _metadata(context, "authorization")
    return value[len("bearer ") :].strip() if value and value.lower().startswith("bearer ") else None


class InferenceServicer(pb_grpc.GRPCInferenceServiceServicer):
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @_answers_errors
    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:  # noqa: N802
        return pb.ServerLiveResponse(live=True)

    @_answers_errors
    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:  # noqa: N802
        return pb.ServerReadyResponse(ready=self.runtime.ready)

    @_answers_errors
    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:  # noqa: N802
        # As Triton answers it: a model this server does not serve is simply not ready.
        try:
            if request.version:
                check_version(request.name, request.version)
            self.runtime.serving().get(request.name)
        except ModelNotFound:
            return pb.ModelReadyResponse(ready=False)
        return pb.ModelReadyResponse(ready=self.runtime.ready)

    @_answers_errors
    async def ServerMetadata(  # noqa: N802
        self, request: pb.ServerMetadataRequest, context: Any
    ) -> pb.ServerMetadataResponse:
        return pb.ServerMetadataResponse(name="resnet-service", version=__version__, extensions=["classification"])

    @_answers_errors
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:  # noqa: N802
        if request.version:
            check_version(request.name, request.version)
        described = describe_model(self.runtime.serving().get(request.name))
        tensors = pb.ModelMetadataResponse.TensorMetadata
        return pb.ModelMetadataResponse(
            name=described.name,
            versions=described.versions,
            platform=described.platform,
            inputs=[tensors(name=t.name, datatype=t.datatype, shape=t.shape) for t in described.inputs],
            outputs=[tensors(name=t.name, datatype=t.datatype, shape=t.shape) for t in described.outputs],
        )

    def _authorize(self, context: grpc.aio.ServicerContext) -> None:
        """RESNET_API_KEYS guards what HTTP guards: inference and the model repository."""
        keys = self.runtime.settings.api_keys
        if keys:
            check_key(keys, _bearer(context))

    def _repository(self, request: Any, context: grpc.aio.ServicerContext) -> ModelRepository:
        """The models, for a repository call that has the key and names no other repository than the one."""
        self._authorize(context)
        # One model folder (RESNET_MODEL_DIR) is the only repository; a client naming another means another server.
        if request.repository_name:
            raise InvalidInferenceRequest(
                f"this server has one model repository: leave repository_name empty, not '{request.repository_name}'"
            )
        return self.runtime.serving()

    @_answers_errors
    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:  # noqa: N802
        self._authorize(context)
        models = self.runtime.serving()
        with models.use(request.model_name) as served:
            if request.model_version:
                check_version(request.model_name, request.model_version)
            infer, sections = _parsed(request)
            pipeline = served.pipeline
            slot = await pipeline.admit()
            with slot:
                async with pipeline.deadline():
                    results = await classify_tensors(served, infer, sections, slot)
            _call_stats.get().add(results)
            response, raw = answer(served, infer, results, binary=True)
        (output,) = response.outputs
        tensor = pb.ModelInferResponse.InferOutputTensor(name=output.name, datatype=output.datatype, shape=output.shape)
        return pb.ModelInferResponse(
            model_name=response.model_name,
            model_version=response.model_version or "",
            id=response.id or "",
            outputs=[tensor],
            raw_output_contents=[raw or b""],
        )

    @_answers_errors
    async def RepositoryIndex(  # noqa: N802
        self, request: pb.RepositoryIndexRequest, context: Any
    ) -> pb.RepositoryIndexResponse:
        entries = repository_index(self._repository(request, context), ready_only=request.ready)
        index = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(
            models=[index(name=e.name, version=e.version or "", state=e.state, reason=e.reason) for e in entries]
        )

    @_answers_errors
    async def RepositoryModelLoad(  # noqa: N802
        self, request: pb.RepositoryModelLoadRequest, context: Any
    ) -> pb.RepositoryModelLoadResponse:
        await self._repository(request, context).load(request.model_name)
        return pb.RepositoryModelLoadResponse()

    @_answers_errors
    async def RepositoryModelUnload(  # noqa: N802
        self, request: pb.RepositoryModelUnloadRequest, context: Any
    ) -> pb.RepositoryModelUnloadResponse:
        await self._repository(request, context).unload(request.model_name)
        return pb.RepositoryModelUnloadResponse()


def _tracing_interceptors(tracing: Tracing | None) -> list[grpc.aio.ServerInterceptor]:
    """With traces on, a server span per call, continuing the traceparent in the call's metadata."""
    if tracing is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

    # Health probes every few seconds would bury the calls worth reading, as on HTTP.
    probes = filters.any_of(*(filters.method_name(name) for name in ("ServerLive", "ServerReady", "ModelReady")))
    return [aio_server_interceptor(tracer_provider=tracing.provider, filter_=filters.negate(probes))]


async def start_grpc_server(runtime: Runtime) -> grpc.aio.Server:
    """The gRPC server on RESNET_GRPC_HOST:RESNET_GRPC_PORT, started; stop it with ``server.stop(grace)``."""
    settings = runtime.settings
    # A request carries at most RESNET_MAX_IMAGES_PER_REQUEST files within RESNET_MAX_UPLOAD_BYTES, as on HTTP.
    limit = settings.max_upload_bytes + MULTIPART_OVERHEAD_BYTES
    server = grpc.aio.server(
        interceptors=_tracing_interceptors(runtime.tracing),
        options=[("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)],
    )
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(runtime), server)
    address = f"{settings.grpc_host}:{settings.grpc_port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as exc:  # grpcio raises where older versions returned 0
        raise StartupError(f"cannot listen for gRPC on {address} (RESNET_GRPC_PORT): {exc}") from exc
    if bound == 0:
        raise StartupError(f"cannot listen for gRPC on {address} (RESNET_GRPC_PORT)")
    await server.start()
    logger.info("gRPC (Open Inference Protocol v2) on %s", address)
    return server
