"""Bandwidth estimation and allocation: what each receiver's downlink carries (from
transport-wide feedback, or REMB), how to probe for more, and which layers fit."""
