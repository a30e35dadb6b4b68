"""A TensorFlow model for devices: a small Keras network distilled from the champion's scores,
converted with TFLiteConverter to float32, float16 and full-integer int8.

Why distillation: the champion is a scikit-learn pipeline exported to ONNX; there is no
faithful ONNX → TensorFlow converter in this stack, and retraining on labels would give a
different model. A student trained on the champion's *probabilities* (soft targets, binary
cross-entropy) on the training rows learns the champion's ranking; the gates then measure
what it loses on the holdout. Its inputs are the champion's raw features after the
preprocessing spec (`edge.preprocess`: scaling and one-hot, applied by numpy on the device),
so every TFLite variant is a plain dense network on builtin ops, int8 end to end.

TensorFlow is imported inside the functions (5-10 s), never when this module is imported.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import numpy as np

HIDDEN = (32, 16)
EPOCHS = 12
BATCH = 256
LEARNING_RATE = 1e-2
REPRESENTATIVE_ROWS = 500


@dataclass
class Student:
    """The trained Keras model and the per-format TFLite flatbuffers."""

    keras_model: object
    tflite: dict[str, bytes]
    epochs: int

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The Keras model's probabilities (float64), the float source of the TFLite exports."""
        return np.asarray(self.keras_model(x, training=False), dtype=np.float64).reshape(-1)


def train_student(x: np.ndarray, soft_targets: np.ndarray, seed: int, epochs: int = EPOCHS):
    """Fit a small dense network to the champion's probabilities (deterministic for a seed)."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(seed)
    model = tf.keras.Sequential([tf.keras.Input(shape=(x.shape[1],), dtype="float32")]
                                + [tf.keras.layers.Dense(units, activation="relu") for units in HIDDEN]
                                + [tf.keras.layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=tf.keras.optimizers.Adam(LEARNING_RATE), loss="binary_crossentropy")
    model.fit(x.astype(np.float32), soft_targets.astype(np.float32).reshape(-1, 1), epochs=epochs,
              batch_size=BATCH, verbose=0, shuffle=True)
    return model


def convert(model, representative: np.ndarray) -> dict[str, bytes]:
    """TFLite flatbuffers: `tflite_float32`, `tflite_float16` (float16 weights) and
    `tflite_int8` (full-integer: int8 weights, activations, input and output, calibrated on
    `representative` rows)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        # Through a SavedModel: Keras 3's export freezes the weights into constants (a concrete
        # function of the live model keeps resource variables, which int8 calibration cannot
        # read), and its signature keeps the batch dimension dynamic for the device.
        model.export(tmp, format="tf_saved_model", verbose=False)
        return _convert_saved_model(tf, tmp, representative)


def _convert_saved_model(tf, saved_model: str, representative: np.ndarray) -> dict[str, bytes]:
    def converter():
        return tf.lite.TFLiteConverter.from_saved_model(saved_model)

    out = {"tflite_float32": converter().convert()}

    half = converter()
    half.optimizations = [tf.lite.Optimize.DEFAULT]
    half.target_spec.supported_types = [tf.float16]
    out["tflite_float16"] = half.convert()

    rows = representative[:REPRESENTATIVE_ROWS].astype(np.float32)

    def calibration():
        for i in range(len(rows)):
            yield [rows[i:i + 1]]

    full = converter()
    full.optimizations = [tf.lite.Optimize.DEFAULT]
    full.representative_dataset = calibration
    full.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    full.inference_input_type = tf.int8
    full.inference_output_type = tf.int8
    out["tflite_int8"] = full.convert()
    return out


def distill(x_train: np.ndarray, soft_targets: np.ndarray, seed: int, epochs: int = EPOCHS) -> Student:
    """Train the student and convert it to every TFLite format."""
    model = train_student(x_train, soft_targets, seed, epochs)
    return Student(model, convert(model, x_train), epochs)
