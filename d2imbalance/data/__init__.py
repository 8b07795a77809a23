"""Dataset code: the embedded shapes dataset, registration, and COCO-JSON validation."""
