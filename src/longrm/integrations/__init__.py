"""Reward functions for RL trainers that call a `longrm serve` service.

Import the one your trainer needs: `longrm.integrations.trl.RemoteReward` (TRL's GRPOTrainer),
`longrm.integrations.verl.LongRMRewardManager` (verl's reward loop). Each module imports only
what it uses (httpx, and torch for verl), never the trainer, and never the other.
"""
