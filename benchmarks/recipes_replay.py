"""Flex with the recipes among its candidates, replayed on the bench's rows.

For every flex run of a ``flexsk bench`` results file that also holds the
recipes (auto-rgn, lp-ft, llrd), ranks flex's candidates together with the
three recipe runs of the same scenario and repeat, by the bench's ranking
function (validation accuracy, then loss), and scores the pick on test data
(the selection run's pick, Table 3's protocol). Each recipe candidate is
taken to train as the recipe's own run did. Prints the mean test accuracy of
flex, of the replayed ``candidates=("units", "all", "auto-rgn", "lp-ft",
"llrd")``, and of the rivals; the scenarios within 1 point of the best of
ft-all, ft-fc (1) and the recipes; and what the three extra runs cost.
Nothing is trained; it takes seconds.

    python benchmarks/recipes_replay.py docs/_static/bench/results.csv
"""

import argparse
from collections import defaultdict

import numpy as np

from flexsk.bench import best_key, read_results

RECIPES = ("auto-rgn", "lp-ft", "llrd")
RIVALS = ("ft-all", "ft-fc-1") + RECIPES


def replay(rows):
    runs = defaultdict(dict)
    for row in rows:
        runs[(row["net"], row["n_channels"], row["shift"], row["ratio"],
              row["repeat"])][row["strategy"]] = row
    tests = defaultdict(lambda: defaultdict(list))
    picked_a_recipe = 0
    seconds = defaultdict(float)
    for key, by_strategy in runs.items():
        if not {"flex", *RIVALS} <= set(by_strategy):
            continue
        flex = by_strategy["flex"]
        scores, losses = dict(flex["validation_scores"]), dict(flex["validation_losses"])
        test = dict(flex["candidate_test_scores"])
        for recipe in RECIPES:
            run = by_strategy[recipe]
            scores[recipe] = run["validation_scores"][recipe]
            losses[recipe] = run["validation_losses"][recipe]
            test[recipe] = run["test_accuracy"]
        pick = best_key(scores, losses)
        picked_a_recipe += pick in RECIPES
        scenario = key[:4]
        tests[scenario]["flex"].append(flex["test_accuracy"])
        tests[scenario]["flex+recipes"].append(test[pick])
        for rival in RIVALS:
            tests[scenario][rival].append(by_strategy[rival]["test_accuracy"])
        seconds["flex"] += flex["fit_seconds"]
        seconds["recipes"] += sum(by_strategy[r]["fit_seconds"] for r in RECIPES)
    means = {s: {m: np.mean(v) for m, v in d.items()} for s, d in tests.items()}
    n_runs = sum(len(d["flex"]) for d in tests.values())
    return means, picked_a_recipe, n_runs, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    args = parser.parse_args()
    means, picked, n_runs, seconds = replay(read_results(args.results))
    print(f"{len(means)} scenarios, {n_runs} flex runs; a recipe picked in {picked}")
    for method in ("flex", "flex+recipes") + RIVALS:
        print(f"mean test accuracy, {method}: {np.mean([m[method] for m in means.values()]):.4f}")
    for method in ("flex", "flex+recipes"):
        close = sum(m[method] >= max(m[r] for r in RIVALS) - 0.01 - 1e-12
                    for m in means.values())
        print(f"{method} within 1 point of the best of {', '.join(RIVALS)}: "
              f"{close}/{len(means)}")
    print(f"the three recipe runs cost {seconds['recipes'] / seconds['flex']:.2f} times "
          f"flex's fit seconds")


if __name__ == "__main__":
    main()
