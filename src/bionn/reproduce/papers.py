"""The papers of the reading list that have landed in bionn, one :class:`Paper` each.

Every entry's ``quick`` profile is a reduced budget that finishes in minutes on one CPU
thread (its budget says how it is reduced); ``full`` is the paper's setting at the budget of
the family's benchmark script (``benchmarks/<family>.py``), which its docs page records.
The paper's numbers and their sources are those the family's docs page
(``docs/rules/<family>.md``) cites; a claim the paper makes in words only (no number) is
written as the number that states it (a gap of 0 to backprop, chance, a closed form), and its
source says so.
"""

from __future__ import annotations

from typing import Any

from bionn.reproduce.registry import Claim, Paper, Profile, Results, Run, register_paper

MNIST_SIZE = 60000


def _error(results: Results, label: str) -> float | None:
    acc = results[label].get("test_accuracy")
    return None if acc is None else 100.0 * (1.0 - acc)


def _accuracy(results: Results, label: str) -> float | None:
    acc = results[label].get("test_accuracy")
    return None if acc is None else 100.0 * acc


def _gap(results: Results, label: str, baseline: str) -> float | None:
    ours, base = _error(results, label), _error(results, baseline)
    return None if ours is None or base is None else ours - base


def _last(results: Results, label: str, key: str) -> Any:
    history = results[label].get("history") or []
    return history[-1].get(key) if history else None


def _train(label: str, train_size: int | None = None, **config: Any) -> Run:
    return Run(label, config, train_size=train_size)


def _budget(epochs: int, size: int | None, extra: str = "") -> str:
    examples = "all 60000" if size is None else f"a seeded slice of {size} of the 60000"
    return f"{epochs} epoch{'s' if epochs > 1 else ''} on {examples} MNIST training images" + (
        f", {extra}" if extra else "")


# -- feedback alignment: Lillicrap et al. 2016, Nokland 2016, Liao et al. 2016 ----------------

def _fa_runs(epochs: int, size: int | None) -> tuple[Run, ...]:
    common = {"dataset": "mnist", "model": "mlp:1000", "activation": "tanh", "epochs": epochs}
    return tuple(_train(rule, size, rule=rule, **common) for rule in ("bp", "fa", "dfa", "usf"))


def _fa_measure(results: Results) -> dict[str, float | None]:
    return {
        "fa_error": _error(results, "fa"),
        "bp_error": _error(results, "bp"),
        "fa_angle": results["fa"].get("angle_to_backprop_deg"),
        "dfa_error": _error(results, "dfa"),
        "usf_gap": _gap(results, "usf", "bp"),
    }


register_paper(Paper(
    name="feedback-alignment",
    aliases=("fa", "lillicrap2016"),
    citation="T. P. Lillicrap, D. Cownden, D. B. Tweed & C. J. Akerman (2016), Nat. Commun. "
             "7:13276, doi:10.1038/ncomms13276; A. Nokland (2016), NeurIPS, arXiv:1609.01596; "
             "Q. Liao, J. Z. Leibo & T. Poggio (2016), AAAI, arXiv:1510.05067",
    family="feedback_alignment",
    setting="MNIST, Lillicrap's 784-1000-10 network (the paper: logistic units, squared "
            "error, SGD 1e-3, weight decay 1e-6; bionn: tanh, cross-entropy, Adam 1e-3, cosine, "
            "batch 100); fa, dfa and sign symmetry (usf) against backprop on the same network, "
            "data and seed",
    claims=(
        Claim("fa_error", "test error, fa", 2.1,
              "Lillicrap et al., arXiv:1411.0247v1, text and Fig. 2a (mean of 20 runs)",
              "lower", 0.5),
        Claim("bp_error", "test error, bp (same network)", 2.4,
              "Lillicrap et al., arXiv:1411.0247v1, text and Fig. 2a (mean of 20 runs)",
              "lower", 0.5),
        Claim("fa_angle", "angle of fa's update to backprop's, last epoch", 90.0,
              "Lillicrap et al. 2016, Fig. 2 (the update stays within 90 deg)", "lower", 0.0,
              "deg"),
        Claim("dfa_error", "test error, dfa", 1.45,
              "Nokland 2016, abstract (with dropout; bionn's runs use none)", "lower", 0.5),
        Claim("usf_gap", "test error of usf minus bp's", 0.0,
              "Liao et al. 2016, text: sign-concordant feedback about as good as backprop "
              "(no MNIST number; 0 points)", "lower", 0.3, "points"),
    ),
    profiles={
        "quick": Profile(_fa_runs(1, 20000), _budget(1, 20000, "4 rules"), 60.0),
        "full": Profile(_fa_runs(20, None), _budget(20, None, "4 rules (the budget of "
                        "benchmarks/feedback_alignment.py)"), 2400.0),
    },
    measure=_fa_measure,
))


# -- predictive coding: Whittington & Bogacz 2017 ---------------------------------------------

def _pc_runs(epochs: int, size: int | None) -> tuple[Run, ...]:
    common = {"dataset": "mnist", "model": "mlp:500,500", "activation": "sigmoid",
              "epochs": epochs}
    return (
        _train("bp", size, rule="bp", **common),
        _train("pc", size, rule="pc", options={"inference_steps": 20, "inference_rate": 0.1},
               **common),
        _train("pc-fixed", size, rule="pc-fixed", **common),
    )


register_paper(Paper(
    name="predictive-coding",
    aliases=("pc", "whittington-bogacz"),
    citation="J. C. R. Whittington & R. Bogacz (2017), Neural Comput. 29:1229-1262, "
             "doi:10.1162/NECO_a_00949; Whittington & Bogacz (2019), Trends Cogn. Sci., Box 3",
    family="predictive_coding",
    setting="MNIST, 784-500-500-10 sigmoid, squared output error; pc with T = 20 inference "
            "steps of rate 0.1, pc-fixed (the fixed-prediction limit), backprop beside them",
    claims=(
        Claim("pc_gap", "test error of pc minus bp's", 0.0,
              "W&B 2017, Sec. 3 (MNIST): pc learns about as well as backprop (no gap given; "
              "0 points)", "lower", 0.3, "points"),
        Claim("pc_fixed_angle", "angle of pc-fixed's update to backprop's", 0.0,
              "W&B 2017, Sec. 2: in the fixed-prediction limit the update is backprop's",
              "close", 1.0, "deg"),
        Claim("pc_angle", "angle of pc's update to backprop's", 0.0,
              "W&B 2017, Fig. 3: pc's weight change converges towards backprop's", "lower",
              10.0, "deg"),
    ),
    profiles={
        "quick": Profile(_pc_runs(1, 6000), _budget(1, 6000, "bp, pc, pc-fixed"), 30.0),
        "full": Profile(_pc_runs(10, None), _budget(10, None, "bp, pc, pc-fixed (the budget "
                        "of benchmarks/predictive_coding.py)"), 1200.0),
    },
    measure=lambda r: {
        "pc_gap": _gap(r, "pc", "bp"),
        "pc_fixed_angle": r["pc-fixed"].get("angle_to_backprop_deg"),
        "pc_angle": r["pc"].get("angle_to_backprop_deg"),
    },
))


# -- Krotov & Hopfield 2019 --------------------------------------------------------------------

KROTOV = {"p": 3.0, "k": 7, "delta": 0.4, "n": 4.5, "m": 6.0, "eps0": 0.06}


def _krotov_measure(results: Results) -> dict[str, float | None]:
    history = results["krotov"].get("history") or []
    unsup = [r for r in history if r.get("phase") == "unsupervised"]
    quantiles = unsup[-1].get("synapse_norm_quantiles") if unsup else None
    median = None if not quantiles else quantiles.get("0.5")
    return {"error": _error(results, "krotov"), "norm": median}


register_paper(Paper(
    name="krotov",
    aliases=("krotov-hopfield",),
    citation="D. Krotov & J. J. Hopfield (2019), PNAS 116:7723-7731, "
             "doi:10.1073/pnas.1820458116",
    family="krotov_hopfield",
    setting="MNIST, 2000 hidden units learned without labels (p = 3, k = 7, Delta = 0.4, "
            "R = 1), then the paper's supervised top layer (n = 4.5, m = 6)",
    claims=(
        Claim("error", "test error", 1.5,
              "Krotov & Hopfield 2019, text (MNIST, 2000 hidden units: about 1.5%)",
              "lower", 0.5),
        Claim("norm", "median ||W_mu||_p after the unsupervised phase", 1.0,
              "Krotov & Hopfield 2019, Eq. (3) and text: the weights converge to ||W||_p = R",
              "close", 0.05, ""),
    ),
    profiles={
        "quick": Profile(
            (_train("krotov", rule="krotov", dataset="mnist", epochs=20, batch_size=100,
                    options={**KROTOV, "hidden": 400, "unsupervised_epochs": 20,
                             "beta": 3e-4}),),
            "400 hidden units (not 2000), 20 unsupervised + 20 supervised epochs on all 60000 "
            "MNIST training images (the quick profile of benchmarks/krotov_hopfield.py)", 90.0),
        "full": Profile(
            (_train("krotov", rule="krotov", dataset="mnist", epochs=120, batch_size=100,
                    options={**KROTOV, "hidden": 2000, "unsupervised_epochs": 60,
                             "beta": 3e-5}),),
            "2000 hidden units, 60 unsupervised + 120 supervised epochs (the paper profile of "
            "benchmarks/krotov_hopfield.py)", 900.0),
    },
    measure=_krotov_measure,
))


# -- DECOLLE: Kaiser, Mostafa & Neftci 2020 -----------------------------------------------------

def _decolle_runs(epochs: int, size: int | None) -> tuple[Run, ...]:
    common = {"dataset": "mnist-spikes", "model": "mlp:256", "epochs": epochs,
              "batch_size": 128, "options": {"timesteps": 20, "burn_in": 4}}
    return (_train("decolle", size, rule="decolle", **common),
            _train("snn-bptt", size, rule="snn-bptt", **common))


register_paper(Paper(
    name="decolle",
    aliases=("kaiser2020",),
    citation="J. Kaiser, H. Mostafa & E. Neftci (2020), Front. Neurosci. 14:424, "
             "doi:10.3389/fnins.2020.00424",
    family="decolle",
    setting="the paper: N-MNIST and DVS Gesture event streams, convolutional; bionn: "
            "Poisson-coded MNIST (T = 20, burn-in 4), 784-256-10 LIF, local readouts, "
            "BPTT through the same network beside it",
    claims=(
        # The paper's error table (N-MNIST, DVS Gesture) could not be checked against the
        # paper, and its data sets differ from bionn's, so no error rate is compared.
        Claim("gap", "test error of decolle minus snn-bptt's", 0.0,
              "Kaiser et al. 2020, abstract: DECOLLE 'performs comparably to the "
              "state-of-the-art' on N-MNIST and DVS Gesture (0 points)", "lower", 1.5,
              "points"),
    ),
    profiles={
        "quick": Profile(_decolle_runs(1, 20000), _budget(1, 20000, "decolle and snn-bptt, "
                         "batch 128"), 60.0),
        "full": Profile(_decolle_runs(6, None), _budget(6, None, "decolle and snn-bptt, batch "
                        "128 (the budget of benchmarks/decolle.py)"), 3500.0),
    },
    measure=lambda r: {"gap": _gap(r, "decolle", "snn-bptt")},
))


# -- contrastive learning: Scellier & Bengio 2017 (equilibrium propagation) --------------------

def _ep_runs(epochs: int, size: int | None) -> tuple[Run, ...]:
    # The reference code's rates 0.1 / 0.05 multiply (E^beta - E^0) / beta on its cost
    # ||y - d||^2 (no 1/2) with beta 0.5: on C = ||y - d||^2 / 2 (beta 1) that step is 0.2 / 0.1.
    return (_train("ep", size, rule="ep", dataset="mnist", model="mlp:500", epochs=epochs,
                   batch_size=20, optimizer="sgd", lr=1.0, schedule="constant",
                   options={"free_steps": 20, "nudged_steps": 4, "step_size": 0.5,
                            "persistent": True, "layer_lrs": (0.2, 0.1), "nudging": 1.0,
                            "random_sign": True}),)


register_paper(Paper(
    name="equilibrium-propagation",
    aliases=("ep", "contrastive", "scellier-bengio"),
    citation="B. Scellier & Y. Bengio (2017), Front. Comput. Neurosci. 11:24, "
             "doi:10.3389/fncom.2017.00024; Whittington & Bogacz (2019), Box 2",
    family="contrastive",
    setting="MNIST, 784-500-10 hard sigmoid, 20 free and 4 nudged steps of size 0.5, "
            "beta = 1 with a random sign, per-layer rates 0.2 / 0.1 (the reference code's 0.1 / "
            "0.05 on its cost without the 1/2), batch 20, persistent particles; the test error "
            "of the free phase from zero states",
    claims=(
        Claim("error", "test error, ep", 2.5,
              "Scellier & Bengio 2017, Sec. 5 (one hidden layer: about 2-3%)", "lower", 0.5),
    ),
    profiles={
        "quick": Profile(_ep_runs(2, None), _budget(2, None), 90.0),
        "full": Profile(_ep_runs(25, None), _budget(25, None, "the budget of "
                        "benchmarks/contrastive.py (the paper trains on 50000)"), 9000.0),
    },
    measure=lambda r: {"error": _error(r, "ep")},
))


# -- temporal credit assignment: Lillicrap & Santoro 2019 --------------------------------------

def _tc_runs(epochs: int, n_train: int, ucr_epochs: int) -> tuple[Run, ...]:
    copy = f"copy:delay=20,n_train={n_train},n_test=400"
    common = {"model": "rnn:32", "activation": "tanh", "lr": 5e-3, "batch_size": 32,
              "schedule": "constant"}
    return (
        _train("bptt-copy", rule="bptt", dataset=copy, epochs=epochs, **common),
        _train("tbptt-copy", rule="tbptt", dataset=copy, epochs=epochs,
               options={"truncation": 5}, **common),
        _train("bptt-jvowels", rule="bptt", dataset="jvowels", epochs=ucr_epochs, **common),
    )


def _jvowels_reference() -> float:
    from bionn.data import DATASETS

    return 100.0 * DATASETS["jvowels"].reference[0]


register_paper(Paper(
    name="temporal-credit",
    aliases=("lillicrap-santoro", "bptt"),
    citation="T. P. Lillicrap & A. Santoro (2019), Curr. Opin. Neurobiol. 55:82-89, "
             "doi:10.1016/j.conb.2019.01.011",
    family="temporal_credit",
    setting="delayed recall of one of 4 symbols after 20 steps of distractors (a 32-unit leaky "
            "RNN), BPTT against truncated BPTT (K = 5); JapaneseVowels (UEA) with BPTT",
    claims=(
        Claim("bptt_copy", "bptt accuracy, delayed recall, delay 20", 100.0,
              "Lillicrap & Santoro 2019, Sec. on BPTT: exact credit across the delay "
              "(100% = solved)", "higher", 5.0),
        Claim("tbptt_copy", "tbptt (K = 5) accuracy, delay 20", 25.0,
              "Lillicrap & Santoro 2019, on truncation: no credit beyond K steps (chance, 25%)",
              "lower", 10.0),
        Claim("jvowels", "bptt test accuracy, JapaneseVowels", _jvowels_reference(),
              "Bagnall et al. 2018, arXiv:1811.00075 (1-NN DTW_D, the published reference)",
              "higher", 2.0),
    ),
    profiles={
        "quick": Profile(_tc_runs(8, 512, 10), "delayed recall: 8 epochs on 512 training "
                         "sequences; JapaneseVowels: 10 epochs", 30.0),
        "full": Profile(_tc_runs(8, 1024, 20), "delayed recall: 8 epochs on 1024 training "
                        "sequences; JapaneseVowels: 20 epochs (the budgets of "
                        "benchmarks/temporal_credit.py)", 600.0),
    },
    measure=lambda r: {"bptt_copy": _accuracy(r, "bptt-copy"),
                       "tbptt_copy": _accuracy(r, "tbptt-copy"),
                       "jvowels": _accuracy(r, "bptt-jvowels")},
))


# -- free convolutions: Ott, Linstead, LaHaye & Baldi 2020 -------------------------------------

def _fc_runs(epochs: int, size: int | None) -> tuple[Run, ...]:
    common = {"rule": "bp", "dataset": "mnist", "model": "fcn-ott", "epochs": epochs,
              "batch_size": 128, "schedule": "constant", "robustness": True}
    return (_train("fcn-a0", size, **common),
            _train("fcn-a0.2", size, augment="shift:0.2", **common))


def _fc_measure(results: Results) -> dict[str, float | None]:
    def shifted(label: str) -> float | None:
        report = results[label].get("robustness") or {}
        value = report.get("shift_0.25")
        return None if value is None else 100.0 * value

    layers = _last(results, "fcn-a0.2", "layer_metrics") or {}
    first = layers.get("features.0") or {}
    return {"shift_a0": shifted("fcn-a0"), "shift_a02": shifted("fcn-a0.2"),
            "sharing": first.get("sharing_euclidean_d1")}


register_paper(Paper(
    name="free-convolution",
    aliases=("ott2020", "weight-sharing"),
    citation="J. Ott, E. Linstead, N. LaHaye & P. Baldi (2020), To share or not to share, "
             "arXiv:1909.11483",
    family="free_convolution",
    setting="MNIST, Ott et al.'s free convolutional network (fcn-ott), trained by backprop "
            "with and without random translations (A = 0.2), tested on test images shifted "
            "by up to 0.25 of their size",
    claims=(
        Claim("shift_a0", "fcn without translated training, accuracy on shifted images", 37.0,
              "Ott et al. 2020, text (untranslated training: about 0.37 on shifted images)",
              "lower", 10.0),
        Claim("shift_a02", "fcn with translated training (A = 0.2), accuracy on shifted "
              "images", 97.0,
              "target of docs/rules/free_convolution.md after Ott et al. 2020: translated "
              "training makes the free network shift-robust (at least 97%)", "higher", 2.0),
        Claim("sharing", "sharing distance (Euclidean, d = 1) of the first free layer, A = 0.2",
              0.07, "Ott et al. 2020, text (0.11 at initialisation, about 0.07 after training)",
              "lower", 0.01, ""),
    ),
    profiles={
        "quick": Profile(_fc_runs(1, 4000), _budget(1, 4000, "Adam 1e-3 constant, batch 128; "
                         "the paper: up to 250 epochs with early stopping"), 90.0),
        "full": Profile(_fc_runs(3, 6000), _budget(3, 6000, "the budget of "
                        "benchmarks/free_convolution.py (reduced: the paper trains up to 250 "
                        "epochs)"), 600.0),
    },
    measure=_fc_measure,
))


# -- dopamine and reinforcement: Neftci & Averbeck 2019 (Schultz 1997, Costa 2016) ------------

def _rl_runs(experiments: int) -> tuple[Run, ...]:
    return (
        Run("td-conditioning", {"agent": "td", "task": "conditioning", "episodes": 300,
                                "options": {"lr": 0.2, "gamma": 0.98}}, kind="rl"),
        Run("fast", {"agent": "two-timescale", "task": "reversal:80/20", "episodes": 1,
                     "experiments": experiments, "options": {"w": 1.0}}, kind="rl"),
        Run("slow", {"agent": "two-timescale", "task": "reversal:80/20", "episodes": 1,
                     "experiments": experiments, "options": {"w": 0.0}}, kind="rl"),
    )


def _rl_measure(results: Results) -> dict[str, float | None]:
    from bionn.rl.envs import ConditioningConfig

    conditioning = ConditioningConfig()
    # the RPE of every step of every trial (mean over experiments), from the run's traces
    rpe = (results["td-conditioning"].get("traces") or {}).get("rpe")
    cue = reward = None
    if rpe is not None:
        cue = float(rpe[-1][conditioning.t_cs - 1])
        reward = float(rpe[-1][conditioning.t_us])

    def after_reversal(label: str) -> float | None:
        curve = results[label].get("reversal_curve")
        if not curve:
            return None
        pairs = dict(zip(curve["offsets"], curve["p_better"], strict=True))
        return sum(pairs[i] for i in range(5)) / 5

    fast, slow = after_reversal("fast"), after_reversal("slow")
    return {"rpe_cue": cue, "rpe_reward": reward,
            "fast_minus_slow": None if fast is None or slow is None else fast - slow}


register_paper(Paper(
    name="dopamine",
    aliases=("neftci-averbeck", "rl"),
    citation="E. O. Neftci & B. B. Averbeck (2019), Nat. Mach. Intell. 1:133-143; W. Schultz, "
             "P. Dayan & P. R. Montague (1997), Science 275:1593; V. D. Costa et al. (2016), "
             "Neuron 92:505-517",
    family="reinforcement",
    setting="TD(0) on a tapped delay line (cue at step 5, reward at step 15, gamma 0.98, "
            "alpha 0.2, 300 trials); a two-armed 80/20 reversal bandit, fast (amygdala, w = 1) "
            "against slow (striatum, w = 0) learners",
    claims=(
        Claim("rpe_cue", "RPE on the step into the cue after learning", 0.98 ** 11,
              "Schultz et al. 1997, Fig. 1 (the response moves to the cue); closed form "
              "gamma^(t_US - t_CS + 1)", "close", 0.01, ""),
        Claim("rpe_reward", "RPE at the predicted reward after learning", 0.0,
              "Schultz et al. 1997, Fig. 1 (no response to a predicted reward)", "close", 0.01,
              ""),
        Claim("fast_minus_slow", "P(better) in the 5 trials from the reversal on, fast minus "
              "slow", 0.0, "Costa et al. 2016; Neftci & Averbeck 2019, text: the amygdala "
              "re-adapts faster than the striatum (> 0)", "higher", 0.0, ""),
    ),
    profiles={
        "quick": Profile(_rl_runs(1000), "300 conditioning trials; 1000 simulated experiments "
                         "of one 80-trial reversal block per learner", 20.0),
        "full": Profile(_rl_runs(10000), "300 conditioning trials; 10000 simulated experiments "
                        "of one 80-trial reversal block per learner", 120.0),
    },
    measure=_rl_measure,
))


# -- dendritic microcircuits: Sacramento, Ponte Costa, Bengio & Senn 2018 ----------------------

def _dendritic_runs(epochs: int, size: int | None) -> tuple[Run, ...]:
    common = {"dataset": "mnist", "model": "mlp:500,500", "activation": "tanh",
              "epochs": epochs, "lr": 1e-3}
    return (_train("dendritic", size, rule="dendritic", options={"eta_pi": 0.0}, **common),
            _train("bp", size, rule="bp", **common))


def _dendritic_learned_runs(epochs: int) -> tuple[Run, ...]:
    """The setting that met the 2.2% target with learned interneurons (docs/rules/dendritic.md):
    SGD with momentum, the per-layer rates with the output layer at 0.75, the interneurons at
    the tracking rates; backprop with the same optimizer beside it."""
    common = {"dataset": "mnist", "model": "mlp:500,500", "activation": "tanh",
              "epochs": epochs, "optimizer": "sgd", "lr": 0.012, "momentum": 0.97}
    options = {"eta_pi": 0.0, "ip_tracking": True, "eta_forward": (4.66, 2.16, 0.75)}
    return (_train("dendritic", None, rule="dendritic", options=options, **common),
            _train("bp", None, rule="bp", **common))


register_paper(Paper(
    name="dendritic",
    aliases=("sacramento2018", "microcircuit"),
    citation="J. Sacramento, R. Ponte Costa, Y. Bengio & W. Senn (2018), NeurIPS 31, "
             "arXiv:1810.11393; Whittington & Bogacz (2019), Box 4",
    family="dendritic",
    setting="MNIST, 784-500-500-10 microcircuit (tanh rates, linear output, simplified "
            "dynamics, fixed random top-down weights, interneurons kept at -W^down), backprop "
            "on the same network beside it",
    claims=(
        Claim("error", "test error, dendritic", 1.96, "Sacramento et al. 2018, text (MNIST)",
              "lower", 0.5),
        Claim("bp_error", "test error, bp (same network)", 1.53,
              "Sacramento et al. 2018, text (MNIST)", "lower", 0.5),
    ),
    profiles={
        "quick": Profile(_dendritic_runs(1, 6000), _budget(1, 6000, "dendritic and bp"),
                         30.0),
        "full": Profile(_dendritic_learned_runs(50), _budget(
            50, None, "dendritic (interneurons learned at the tracking rates, per-layer rates "
            "4.66, 2.16, 0.75) and bp, SGD lr 0.012, momentum 0.97"), 720.0),
    },
    measure=lambda r: {"error": _error(r, "dendritic"), "bp_error": _error(r, "bp")},
))
