"""Traffic routers: Gateway API, Istio and replica ratio, behind one small Protocol (see base.py)."""
