"""Training: Stage I SFT, Stage II preference alignment (LOGO / SimPO / DPO), discriminative RMs."""
