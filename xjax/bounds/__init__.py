"""Certified bounds as a JAX transform: interval bound propagation and CROWN over jaxprs."""

from xjax.bounds._interval import Interval as Interval
from xjax.bounds._transform import alpha_crown as alpha_crown
from xjax.bounds._transform import bounds as bounds
from xjax.bounds._transform import crown as crown
from xjax.bounds._transform import crown_ibp as crown_ibp
from xjax.bounds._transform import ibp as ibp
from xjax.bounds._transform import lipschitz as lipschitz
from xjax.bounds._transform import supported_primitives as supported_primitives

__all__ = ["Interval", "alpha_crown", "bounds", "crown", "crown_ibp", "ibp", "lipschitz",
           "supported_primitives"]
