"""The network and its pure pixel path: model, preprocessing, answers, int8, Grad-CAM, inference (torch)."""
