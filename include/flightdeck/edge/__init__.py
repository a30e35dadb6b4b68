"""Edge deployment: ONNX int8 and TFLite exports with gates, signed over-the-air bundles, and
the device agent that installs them.

Device-side modules (`agent`, `models`, `preprocess`, `bundle`, `store`, `keys`, `errors`)
import only numpy, onnxruntime, ai-edge-litert, cryptography (and boto3 for an S3 store):
no Airflow, TensorFlow, MLflow or pandas. The export side (`export`, `distill`, `quantize`,
`gates`, `publish`) runs in Airflow tasks.
"""
