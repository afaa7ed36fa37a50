"""Published self-tuning and learning-rate-free optimizers, through small adapters.

Each entry names ``"module:factory"``, imported only when the optimizer is chosen, so a
run never pays for (or needs) another package. The factories take the parameters and the
constructor's keywords (plus ``model`` where they name it: Muon's parameter split and
DoG's averaged model need it). The adapters add only what the packages lack for a
benchmark: state that survives ``state_dict``, exact train/eval switches, and the step
actually taken, reported through ``stat_tensors()`` (the hooks:
:mod:`yfbench.engine.optimizers`, whose registry includes this table).
"""

from __future__ import annotations

PEERS: dict[str, str] = {
    "schedulefree_sgd": "yfbench.peers.schedule_free:ScheduleFreeSGD",
    "schedulefree_adamw": "yfbench.peers.schedule_free:ScheduleFreeAdamW",
    "prodigy": "yfbench.peers.prodigy:Prodigy",
    "dadapt_adam": "yfbench.peers.d_adaptation:DAdaptAdam",
    "dadapt_sgd": "yfbench.peers.d_adaptation:DAdaptSGD",
    "dog": "yfbench.peers.dog:AveragedDoG",
    "ldog": "yfbench.peers.dog:AveragedLDoG",
    "momo": "yfbench.peers.momo:Momo",
    "momo_adam": "yfbench.peers.momo:MomoAdam",
    "mechanic": "yfbench.peers.mechanic:MechanicAdamW",
    "muon": "yfbench.peers.muon:MuonWithAdamW",
    "adamw_cosine": "torch.optim:AdamW",
    "nesterov_cosine": "torch.optim:SGD",
    "nadamw_algoperf": "torch.optim:NAdam",
}
