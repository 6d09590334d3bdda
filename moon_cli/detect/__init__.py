"""Core-product detection with ultralytics YOLO: dataset export, training, streaming prediction."""
