"""Training, evaluation and detection: keras-retinanet RetinaNet driven through its library API."""
