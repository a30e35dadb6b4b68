# The container-image alternative to the Lambda zip (up to 10 GB instead of 250 MB unzipped).
# Build context: the unzipped package serverless_package built (handler, flightdeck modules,
# onnxruntime/numpy/orjson for manylinux2014 x86_64, model.onnx, model.json):
#   unzip lambda-<model>-<version>.zip -d build/lambda
#   docker build -f docker/lambda.Dockerfile -t flightdeck-lambda:<version> build/lambda
FROM public.ecr.aws/lambda/python:3.11

COPY . ${LAMBDA_TASK_ROOT}/

# Lambda runs the function as an unprivileged user whatever USER says; this keeps local runs
# (the runtime interface emulator) off root too.
USER nobody

CMD ["flightdeck.serverless.handler.handler"]
