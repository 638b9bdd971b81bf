"""Optimization experts: the paper's prosumer(state) reference models, preferences, the joint receding-horizon expert with voltage limits, the expert policy and demonstrations."""
