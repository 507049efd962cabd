"""`adaptlab compare`: every route on one task, in one time budget, as a report.

recipe.py   the compare recipe (task, routes, seeds, budget) and `load_recipe`
taskdata.py the task's train/test split on disk (carved when missing, overlap refused) as eval tasks
routes.py   the route registry: what each route needs from the task (corpus, preferences) and what a training
            route's objective (sft, dpo, rloo) trains on; a route the task cannot feed is skipped with the reason
rag.py      the rag route: the corpus indexed once per settings, sources retrieved per test item
reward.py   the task's own metric as an RL reward (reward kind `task:` of train/rewards.py)
planner.py  budget parsing and the steps each training route gets (equal wall clock or equal tokens)
budgeted.py a trainer that times its first steps and trains for its seconds (share: time, no warm-up)
cell.py     one cell = one process (`python -m adaptlab.compare.cell SPEC`): train, score, measure
measure.py  what a cell measures: task score, forgetting, sizes, load time, peak memory
runner.py   the matrix: plan (a warm-up where steps must be known first), cells in child processes, cache
            by config hash, resume
stats.py    intervals (Wilson, bootstrap), overlap, Pareto front
verdict.py  the claims and the recommendation, computed from the records
plots.py / report.py   PNG plots, report.md and a self-contained report.html
"""
