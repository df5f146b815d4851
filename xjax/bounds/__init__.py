"""Certified bounds as a JAX transform: interval bound propagation and CROWN over jaxprs."""

from xjax.bounds._interpreter import Interval as Interval
from xjax.bounds._interpreter import bounds as bounds
from xjax.bounds._interpreter import supported_primitives as supported_primitives

__all__ = ["Interval", "bounds", "supported_primitives"]
