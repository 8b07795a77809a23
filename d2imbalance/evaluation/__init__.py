"""Evaluators beyond detectron2's COCOEvaluator, usable with any detector."""
