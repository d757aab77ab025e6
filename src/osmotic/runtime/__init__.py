"""The one runtime every learning mode is composed of: populations, strategies, heads."""
from osmotic.runtime.population import Population, agent_seed
from osmotic.runtime.strategies import STRATEGIES, Strategy, make_strategy

__all__ = ["Population", "agent_seed", "STRATEGIES", "Strategy", "make_strategy"]
