"""HTTP routes: each module is one APIRouter that speaks HTTP and delegates the work."""
