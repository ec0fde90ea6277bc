"""Training machinery shared by pretraining and finetuning: checkpoints, DDP, the step loop."""
