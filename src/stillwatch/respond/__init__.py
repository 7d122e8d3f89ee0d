"""Responses to risk: what a degraded answer keeps and loses."""
