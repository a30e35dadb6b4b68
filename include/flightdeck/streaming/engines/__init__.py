"""Stream-processing engine examples that call the one ONNX scoring function (flightdeck.runtime)."""
