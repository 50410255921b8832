// The two generation RPCs as gRPC callback reactors, one object per call.
//
// A call is admitted (serving phase, deadline, parse, then generation.h's one request path: validation, model
// lookup) on the gRPC thread that starts it (the rag option then retrieves on the work queue, off gRPC's
// threads), then submitted to the model's engine::Engine with an observer that forwards the engine's
// callbacks to the reactor. The engine calls observers on its own thread and they must not block, so the
// observer only records text and, for streams, queues it:
//   - GenerateCall (unary) accumulates the completion and finishes once the engine reports OnFinish;
//   - GenerateStreamCall keeps at most one write in flight; text produced meanwhile is coalesced into ONE
//     pending message (a slow reader receives bigger chunks, memory stays bounded by the completion size),
//     and the last message carries finish_reason, usage and timings.
// Cancellation (client cancel, broken stream, or gRPC's own deadline) calls Engine::Cancel, which frees the
// request's KV blocks before the engine's next iteration; EngineRequest::deadline makes the engine expire the
// request itself (DEADLINE_EXCEEDED) in the queue or mid-generation.
//
// Lifetime: a reactor deletes itself in OnDone, which gRPC runs after Finish and after every other reaction.
// Finish is called only after the engine's OnFinish (or when the request never reached the engine), so the
// observer never outlives its reactor's use. All reactor state is guarded by the reactor's mutex, and Finish
// / StartWrite are issued after the mutex is released.
#ifndef QRAG_SERVER_API_GENERATE_CALLS_H_
#define QRAG_SERVER_API_GENERATE_CALLS_H_

#include <optional>

#include "absl/status/statusor.h"
#include "qrag/v1/inference.pb.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/server_callback.h"
#include "server/api/generation.h"
#include "server/api/serving_state.h"
#include "server/common/work_queue.h"
#include "server/engine/engine.h"

namespace qrag::api {

// Generate / GenerateStream, or Chat / ChatStream (the same path: a chat request is rendered with the
// model's template into prompt token ids, then generates as Generate does).
enum class CallKind { kGenerate, kChat };

// Starts a unary Generate (Chat) call; the returned reactor serializes a qrag.v1.GenerateResponse
// (ChatResponse) into `response`. Retrieval for the rag option runs on `work` (RESOURCE_EXHAUSTED when its
// queue is full).
grpc::ServerUnaryReactor* StartGenerateCall(CallKind kind, ServingState* state, WorkQueue* work,
                                            grpc::CallbackServerContext* context, const grpc::ByteBuffer* request,
                                            grpc::ByteBuffer* response);

// Starts a GenerateStream (ChatStream) call writing serialized qrag.v1.GenerateStreamResponse
// (ChatStreamResponse) messages.
grpc::ServerWriteReactor<grpc::ByteBuffer>* StartGenerateStreamCall(CallKind kind, ServingState* state,
                                                                     WorkQueue* work,
                                                                     grpc::CallbackServerContext* context,
                                                                     const grpc::ByteBuffer* request);

}  // namespace qrag::api

#endif  // QRAG_SERVER_API_GENERATE_CALLS_H_
