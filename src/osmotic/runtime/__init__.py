"""The one runtime every learning mode is composed of: populations, strategies, heads."""
from osmotic.runtime.population import Population, agent_seed
from osmotic.runtime.strategies import STRATEGIES, Strategy, make_strategy

__all__ = ["STRATEGIES", "Population", "Strategy", "agent_seed", "make_strategy"]
