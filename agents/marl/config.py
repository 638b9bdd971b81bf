"""TrainConfig: every knob of a training run, one docstring each, checked before anything runs.

The defaults give a critic fit to lead an actor on day-long episodes: no discount (γ = 1; the
day is the episode and the observation holds the time of day), rewards divided per agent by
their root mean square (so a large prosumer does not drown a small one in the shared critic),
an agent-id embedding in the attention critics, and targets that track the critics at every
critic step.  The recipe of each method on top of these (pretraining, objective, weights) is
agents.marl.evaluate.TRAIN_OPTIONS.
"""

from dataclasses import dataclass, field

from agents.marl.algorithms import ALGORITHMS, REWARD_NORMS
from agents.marl.losses import SCHEDULES
from agents.marl.objectives import IMITATION_LOSSES, OBJECTIVES
from agents.marl.shaping import SHAPINGS
from simulators.validation import ConfigError, check_choice, check_range


@dataclass
class TrainConfig:
    scenario: str = "ieee33"
    """name of the training scenario; the first part of the run folder's name"""
    algo: str = "imitative_diffattn"
    """algorithm: a name from ALGORITHMS (imitative_diffattn | imitative_softmax | matd3 | matd3_bc | maddpg | maac | iddpg | bc | dagger)"""
    seed: int = 0
    """seeds torch, numpy, python, the replay buffer, the episode draws and the environment"""
    env_options: dict = field(default_factory=dict)
    """agents.env.EnvConfig overrides as JSON, e.g. '{"network": "ieee33", "max_prosumers": 8}'"""
    eval_days: str = "validation"
    """days of the evaluation episodes (EnvConfig.days); keep_best and early stopping need other than 'test'"""
    total_steps: int = 20_000
    """environment steps to train for (one step = every agent acts once)"""
    # ---- the expert ---------------------------------------------------------------------
    expert: str = ""
    """online expert labels of visited states: '' (none) | 'policy:expert' (the joint expert planned from the state the environment is in, DAgger) | 'policy:<name>' (POLICIES, e.g. policy:rule)"""
    expert_options: dict = field(default_factory=dict)
    """options of the online expert (policy 'expert': agents/expert/policy.py DEFAULT_OPTIONS)"""
    label_every: int = 1
    """label every k-th visited state with the online expert (the joint expert takes ~0.2 s a state)"""
    demos: str = ""
    """expert demonstrations, .npz with obs (T, N, F) and actions (T, N, A) (agents/expert/policy.py:write_demonstrations)"""
    demo_replay: bool = False
    """keep the demonstrations in the replay buffer for good, as DDPGfD (needs demos with rewards and a critic without global state)"""
    pretrain_steps: int = 0
    """gradient steps of actor imitation on the demonstrations before the first environment step"""
    critic_pretrain_steps: int = 0
    """at most this many steps regressing the critics onto the demonstrations' Monte-Carlo return-to-go (the value of the expert's own actions), after the actor's pretraining (needs demo_replay)"""
    critic_pretrain_tol: float = 0.02
    """critic pretraining stops once the mean loss of the last 100 steps moved by less than this fraction"""
    critic_warmup_steps: int = 0
    """environment steps after learning_starts in which the critic learns but the actor only imitates (Q term off)"""
    warmup_with_expert: bool = True
    """act with the online expert until learning_starts (without one: the pretrained actor, else uniformly at random)"""
    # ---- replay and updates -------------------------------------------------------------
    learning_starts: int = 960
    """environment steps collected before the first update"""
    buffer_size: int = 100_000
    """replay capacity in environment steps"""
    batch_size: int = 256
    """transitions per gradient step"""
    update_every: int = 1
    """environment steps between update rounds"""
    updates_per_round: int = 1
    """gradient steps per update round"""
    # ---- the critic ---------------------------------------------------------------------
    gamma: float = 1.0
    """discount per 15-minute step (1: the undiscounted cost of the day, which the episode is)"""
    n_step: int = 1
    """TD targets over n steps of the stored trajectory (cut at the day's end and at the newest transition)"""
    tau: float = 0.005
    """Polyak factor of the target networks (critic targets move at every critic step, actor targets at actor steps)"""
    reward_norm: str = "agent"
    """reward scaling in the TD target: 'agent' (each agent's rewards / their RMS in the buffer at the first update) | 'none'"""
    reward_scale: float = 1.0
    """rewards are multiplied by this in the TD target (after reward_norm)"""
    critic_agent_id: int = 8
    """width of the agent-id embedding of the attention and local critics (0 = none: agents indistinguishable)"""
    critic_lr: float = 1e-3
    """critic learning rate (Adam)"""
    policy_noise: float = 0.2
    """std of the target policy smoothing noise (TD3), normalized units"""
    noise_clip: float = 0.5
    """clip of the target policy smoothing noise, normalized units"""
    shaping: str = "none"
    """reward shaping of the critic's targets: 'none' | 'storage' (potential = the value of stored energy from the joint expert's duals, agents/marl/shaping.py; the optimal policy is unchanged)"""
    shaping_days: int = 8
    """training days, spread over the year, whose perfect-foresight duals give the value of stored energy per step ('storage')"""
    # ---- the actor ----------------------------------------------------------------------
    actor_objective: str = "q"
    """policy-improvement term of the actor loss: 'q' (TD3 / TD3+BC: -α Q) | 'awac' (advantage-weighted regression on the replay, twin-critic advantages) | 'awac_columns' (awac on the critic_actions columns alone, the others imitating; a loss on the stressed feeder's validation days, README "Where the collapse comes from")"""
    q_weight: float = 2.5
    """α of the 'q' objective of imitating algorithms: -α Q / mean|Q| + β imitation (TD3+BC's 2.5)"""
    awac_temperature: float = 1.0
    """λ of 'awac': weights exp(A / (λ mean|A|)), A = min over the twin critics of Q(s, a) - Q(s, π(s))"""
    awac_max_weight: float = 20.0
    """clip of the 'awac' weights (before they are normalized to mean 1 over the batch)"""
    imitation_loss: str = "w2"
    """'w2': W2² of the Gaussian policy to the expert (mean and spread) | 'mean': squared error of the mean only, so the spread keeps exploring"""
    min_std: float = 0.0
    """floor of the Gaussian actor's standard deviation (before tanh), so exploration cannot collapse"""
    critic_actions: str = ""
    """comma-separated action columns (simulators/prosumer/interface.py) that the imitation term leaves to the critic
    once the Q term is on, e.g. 'pv_q' when the demonstrations come from an expert without network limits: reactive
    power is then a free variable of its program (its labels are a solver's arbitrary 0), and only the critic, whose
    reward holds the voltage penalty, knows what it is worth; pretraining and the critic's warm-up still imitate every
    column ('' = imitate every column throughout; 'pv_q' on the stressed feeder's validation days was a loss under the
    shared voltage credit, where the critic learned to absorb at every voltage, README "Reactive power left to the
    critic", and was adopted with the difference credit, README "Difference voltage credit")"""
    critic_handover_steps: int = 0
    """environment steps over which the imitation weight of the critic_actions columns falls linearly from 1 to 0
    once the Q term is on (0 = at once); the critic then sees those columns move a little before the actor follows
    its gradient alone (400 on the stressed feeder's validation days: a tie, not adopted; README "Handing reactive
    power to the critic gradually")"""
    critic_actions_std: float = 0.0
    """floor of the actor's standard deviation (before tanh) on the critic_actions columns, from the first
    environment step, when above min_std: the critic can only learn what those columns are worth where the replay
    varies them, and the demonstrations hold one value (e.g. pv_q 0); the evaluated actor is the mean, unaffected
    (0 = min_std on every column; 0.3 on the stressed feeder's validation days: a tie, worse on the median, not
    adopted; README "Where the collapse comes from")"""
    critic_actions_value: str = "q"
    """what the actor follows on the critic_actions columns once the Q term is on: 'q' the critic's Q | 'reward' a
    model of the step's own reward, fit by regression on the replayed one-step rewards (a second network of the
    critic's kind, same inputs): right for columns whose effect ends with the step, such as the inverters' reactive
    power (it changes this step's voltages, no stored energy), where the day-long TD target's noise buries that
    effect; the other columns still follow Q.  Needs actor_objective 'q' ('reward' with critic_actions 'pv_q' on the
    stressed feeder's validation days: ties with 'q', every seed's kept actor after the Q term with a Volt-VAr slope;
    adopted there, README "A model of the step's reward for reactive power")"""
    actor_lr: float = 3e-4
    """actor learning rate (Adam)"""
    max_grad_norm: float = 10.0
    """gradient-norm clip (0 = off)"""
    exploration_noise: float = 0.1
    """std of the Gaussian exploration noise of deterministic actors, in normalized [-1, 1] units"""
    entropy_coef: float = 0.01
    """entropy weight α of soft-Q algorithms (maac)"""
    imitation_start: float = 1.0
    """imitation weight β at step 0"""
    imitation_end: float = 0.1
    """imitation weight β after imitation_anneal_steps"""
    imitation_schedule: str = "linear"
    """annealing of β: constant | linear | cosine | exponential"""
    imitation_anneal_steps: int = 20_000
    """environment steps over which β moves from start to end"""
    q_normalize: bool = True
    """divide the actor's Q term by mean|Q| when imitation is on (as TD3+BC)"""
    # ---- networks -----------------------------------------------------------------------
    actor_hidden: int = 64
    """width of the actor's hidden layers"""
    actor_layers: int = 2
    """hidden layers of the actor"""
    shared_actor: bool = False
    """one actor network for all agents plus an agent-id embedding (False: weights per agent)"""
    critic_hidden: int = 128
    """width of the MLP and local critics"""
    embed_dim: int = 64
    """embedding width of the attention critics"""
    n_heads: int = 4
    """attention heads"""
    attn_depth: int = 0
    """layer index giving the differential attention's λ_init = 0.8 - 0.6 exp(-0.3 depth)"""
    critic_neighbourhood: str = "all"
    """attention critics: all (every agent attends to every other: O(N²)) | feeder (within its feeder, plus over the feeders' means: for thousands of agents)"""
    critic_blocks: int = 0
    """critic_neighbourhood feeder: blocks of agents (whole feeders, up to 128 agents each) whose TD
    loss one critic update takes, drawn at random per update (0 = every block); an unbiased estimate
    of the loss over all agents at a cost set by the block size, not by the number of agents (the
    other feeders' embeddings enter the feeder means as constants for that update)"""
    # ---- evaluation, logging, checkpoints -----------------------------------------------
    log_every: int = 500
    """environment steps per progress.csv row"""
    eval_every: int = 0
    """environment steps between deterministic evaluations (0 = only at the end)"""
    eval_episodes: int = 1
    """evaluation days, spread over eval_days' pool (0 = no evaluation)"""
    keep_best: bool = False
    """actor.pt is the actor of the best evaluation (the pretrained one at step 0 included; the latest: actor_last.pt)"""
    early_stop_patience: int = 0
    """stop after this many evaluations without a better one (0 = never); needs keep_best"""
    snapshot_every: int = 0
    """steps between actor snapshots snapshots/actor_<step>.pt, the first after pretraining (0 = none); for curves computed after training"""
    checkpoint_every: int = 5_000
    """environment steps between checkpoints (one is always written at the end)"""
    results_dir: str = "results"
    """parent folder of the run folder"""
    run_name: str = ""
    """run folder name; empty = <scenario>__<algo>__<seed>__<timestamp>"""
    threads: int = 2
    """torch CPU threads"""
    progress: bool = True
    """show a progress bar"""


NEIGHBOURHOODS = ("all", "feeder")
NEIGHBOURHOOD_CRITICS = ("diffattn", "softmax_attn")
CRITIC_ACTIONS_VALUES = ("q", "reward")
CLI_CHOICES = {"algo": ALGORITHMS, "imitation_schedule": SCHEDULES, "actor_objective": OBJECTIVES,
               "imitation_loss": IMITATION_LOSSES, "reward_norm": REWARD_NORMS, "critic_neighbourhood": NEIGHBOURHOODS,
               "shaping": SHAPINGS, "critic_actions_value": CRITIC_ACTIONS_VALUES}


def validate(cfg):
    """Check every field before anything runs; raises ConfigError naming field, value, allowed range."""
    for name, choices in CLI_CHOICES.items():
        check_choice(name, getattr(cfg, name), choices)
    if cfg.critic_neighbourhood != "all" and ALGORITHMS[cfg.algo].critic not in NEIGHBOURHOOD_CRITICS:
        raise ConfigError(f"critic_neighbourhood: {cfg.critic_neighbourhood!r} needs an attention critic; algo "
                          f"{cfg.algo!r} has {ALGORITHMS[cfg.algo].critic or 'none'!r} (allowed: all)")
    for name in ("total_steps", "batch_size", "buffer_size", "update_every", "updates_per_round", "log_every",
                 "actor_hidden", "actor_layers", "critic_hidden", "embed_dim", "n_heads", "threads", "n_step",
                 "label_every", "shaping_days"):
        check_range(name, getattr(cfg, name), 1, 10**9)
    if cfg.critic_blocks and cfg.critic_neighbourhood != "feeder":
        raise ConfigError(f"critic_blocks: {cfg.critic_blocks!r} samples neighbourhood blocks; it needs "
                          f"critic_neighbourhood 'feeder' (got {cfg.critic_neighbourhood!r}); allowed with 'all': 0")
    for name in ("learning_starts", "eval_every", "eval_episodes", "checkpoint_every", "attn_depth", "pretrain_steps",
                 "critic_pretrain_steps", "critic_warmup_steps", "imitation_anneal_steps", "critic_agent_id", "critic_blocks",
                 "early_stop_patience", "snapshot_every", "critic_handover_steps"):
        check_range(name, getattr(cfg, name), 0, 10**9)
    check_range("gamma", cfg.gamma, 0.0, 1.0)
    check_range("tau", cfg.tau, 0.0, 1.0, lo_open=True)
    check_range("min_std", cfg.min_std, 0.0, 1.0)
    check_range("critic_actions_std", cfg.critic_actions_std, 0.0, 1.0)
    check_range("critic_pretrain_tol", cfg.critic_pretrain_tol, 0.0, 1.0)
    check_range("awac_temperature", cfg.awac_temperature, 0.0, 1e6, lo_open=True)
    check_range("awac_max_weight", cfg.awac_max_weight, 1.0, 1e9)
    for name in ("env_options", "expert_options"):
        if not isinstance(getattr(cfg, name), dict):
            raise ConfigError(f"{name}: {getattr(cfg, name)!r} must be a JSON object")
    if cfg.expert and not cfg.expert.startswith("policy:"):
        raise ConfigError(f"expert: {cfg.expert!r} is not one of '', 'policy:<name>'")
    needs_eval = [name for name in ("keep_best", "early_stop_patience") if getattr(cfg, name)]
    if needs_eval and (not cfg.eval_episodes or cfg.eval_days == "test"):
        raise ConfigError(f"{needs_eval[0]}: selects on evaluation episodes; needs eval_episodes > 0 (got "
                          f"{cfg.eval_episodes}) and eval_days other than 'test' (got {cfg.eval_days!r}), so that "
                          f"the held-out test days stay unseen")
    if cfg.shaping != "none" and not ALGORITHMS[cfg.algo].critic:
        raise ConfigError(f"shaping: {cfg.shaping!r} shapes the critic's rewards; algo {cfg.algo!r} has no critic "
                          f"(allowed: 'none')")
    if cfg.early_stop_patience and not cfg.keep_best:
        raise ConfigError("early_stop_patience: stopping early keeps the best actor; set keep_best too")
    _check_demo_options(cfg, ALGORITHMS[cfg.algo])
    return cfg


def _check_demo_options(cfg, algo):
    if (cfg.pretrain_steps or cfg.demo_replay) and not cfg.demos:
        raise ConfigError("demos: pretrain_steps > 0 and demo_replay learn from demonstrations; give demos (.npz)")
    if cfg.critic_pretrain_steps and not cfg.demo_replay:
        raise ConfigError("critic_pretrain_steps: the critic pretrains on the demonstration replay; set demo_replay")
    if cfg.demo_replay and (not algo.critic or algo.needs_state):
        reason = "no critic" if not algo.critic else "a critic that reads the global state, which demonstrations do not hold"
        raise ConfigError(f"demo_replay: algo {cfg.algo!r} has {reason}; allowed with: "
                          f"{sorted(k for k, a in ALGORITHMS.items() if a.critic and not a.needs_state)}")
    if cfg.critic_actions and not (algo.imitation and algo.rl and algo.critic):
        raise ConfigError(f"critic_actions: {cfg.critic_actions!r} leaves columns to the critic's Q term; algo "
                          f"{cfg.algo!r} has {'no critic' if not algo.critic else 'no imitation term'} (allowed: '')")
    if cfg.critic_handover_steps and not cfg.critic_actions:
        raise ConfigError(f"critic_handover_steps: {cfg.critic_handover_steps} hands the critic_actions columns over "
                          f"gradually; critic_actions is empty (allowed: 0)")
    if cfg.critic_actions_std and not cfg.critic_actions:
        raise ConfigError(f"critic_actions_std: {cfg.critic_actions_std} widens the exploration of the critic_actions "
                          f"columns; critic_actions is empty (allowed: 0)")
    if cfg.critic_actions_std and algo.actor_head != "gaussian":
        raise ConfigError(f"critic_actions_std: {cfg.critic_actions_std} is a floor on a Gaussian actor's spread; "
                          f"algo {cfg.algo!r} has a {algo.actor_head} actor (allowed: 0)")
    if cfg.critic_actions_value != "q" and not cfg.critic_actions:
        raise ConfigError(f"critic_actions_value: {cfg.critic_actions_value!r} values the critic_actions columns; "
                          f"critic_actions is empty (allowed: 'q')")
    if cfg.critic_actions_value != "q" and cfg.actor_objective != "q":
        raise ConfigError(f"critic_actions_value: {cfg.critic_actions_value!r} is followed by the 'q' objective's "
                          f"gradient; actor_objective is {cfg.actor_objective!r} (allowed with it: 'q')")
    if cfg.actor_objective.startswith("awac") and not (algo.critic and algo.n_critics == 2 and algo.imitation):
        raise ConfigError(f"actor_objective: {cfg.actor_objective!r} weights by twin-critic advantages and belongs to "
                          f"imitating algorithms; algo {cfg.algo!r} has {algo.n_critics} critic(s), "
                          f"imitation={algo.imitation}")
    if cfg.actor_objective == "awac_columns" and not cfg.critic_actions:
        raise ConfigError("actor_objective: 'awac_columns' improves the critic_actions columns alone; critic_actions "
                          "is empty (allowed: 'q', 'awac')")
