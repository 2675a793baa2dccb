"""StoreFlow simulators: a simulated store with ground truth (``simulate``) and simulated devices.

```python
from simulators import simulate, sample_layout_path
from storeflow.layout import load_layout

sim = simulate(load_layout(sample_layout_path("boutique")), shoppers=200, hours=2, seed=1)
for chunk in sim.read_chunks():      # SIM_READ_DTYPE rows, time-ordered
    ...
sim.truth.counter_kpis()
```
"""

from simulators.rf import SIM_READ_DTYPE
from simulators.scenario import SCENARIOS, CrowdParams, DoorParams, RFParams, Scenario
from simulators.sim import Simulation, sample_layout_path, simulate
from simulators.truth import Truth

__all__ = ["simulate", "sample_layout_path", "Simulation", "Truth", "SIM_READ_DTYPE", "SCENARIOS", "Scenario",
           "RFParams", "CrowdParams", "DoorParams"]
