"""Certified bounds as a JAX transform: interval bound propagation and CROWN over jaxprs."""

from xjax.bounds._interpreter import Interval as Interval
from xjax.bounds._interpreter import alpha_crown as alpha_crown
from xjax.bounds._interpreter import bounds as bounds
from xjax.bounds._interpreter import crown as crown
from xjax.bounds._interpreter import crown_ibp as crown_ibp
from xjax.bounds._interpreter import ibp as ibp
from xjax.bounds._interpreter import lipschitz as lipschitz
from xjax.bounds._interpreter import supported_primitives as supported_primitives

__all__ = ["Interval", "alpha_crown", "bounds", "crown", "crown_ibp", "ibp", "lipschitz",
           "supported_primitives"]
