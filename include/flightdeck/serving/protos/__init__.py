"""Open Inference Protocol v2 gRPC stubs, generated from grpc_predict_v2.proto.

Never edit the `grpc_predict_v2_pb2*` files by hand; regenerate them with
`python -m flightdeck.serving.protos.generate`.
"""
