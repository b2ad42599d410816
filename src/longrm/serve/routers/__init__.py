"""One router per contract family; each translates bodies to `RewardService` calls and back.

- `longrm_api`: longrm's own /v1/score, /v1/compare, /v1/rank
- `openrlhf_verl`: OpenRLHF's /get_reward, vLLM's /classify (verl)
- `slime`: slime's remote_rm, /slime/reward
- `openai_chat`: OpenAI's /v1/chat/completions and /v1/models
- `operations`: /health and /metrics (no API key)
"""
