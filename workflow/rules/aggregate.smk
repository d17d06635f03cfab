localrules:
    manifest,


# The resolved profile (skipinit.profile.resolve): which experiments use which cell, read by aggregation.
rule manifest:
    input:
        PROFILE_FILES,
    output:
        manifest="results/{name}/manifest.json",
        # One file per training job with its cells: a job reads its own, never the whole grid.
        packs=directory("results/{name}/packs"),
    log:
        "results/{name}/logs/manifest.log",
    benchmark:
        "results/{name}/benchmarks/manifest.tsv"
    conda:
        "../envs/skipinit.yaml"
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        overrides=profile_overrides(),
    shell:
        "python -m skipinit manifest {input:q} --overrides {params.overrides:q} --out {output.manifest} > {log} 2>&1"


rule aggregate:
    input:
        # Every pack's result.json; the command derives the same list from the manifests (no command-line limit).
        packs=pack_results,
        manifest="results/{name}/manifest.json",
        earlier=added_round_manifests,
    output:
        runs="results/{name}/runs.parquet",
        curves="results/{name}/curves.parquet",
    log:
        "results/{name}/logs/aggregate.log",
    benchmark:
        "results/{name}/benchmarks/aggregate.tsv"
    conda:
        "../envs/skipinit.yaml"
    resources:
        mem_mb=4000,
        runtime=20,
    shell:
        "python -m skipinit aggregate --manifest {input.manifest} --round-manifest {input.earlier} "
        "--runs {output.runs} --curves {output.curves} > {log} 2>&1"


# Adaptive rounds (profile key adaptive:, skipinit.rounds): the runs of rounds 1..k, which round k + 1's seeds
# are chosen from.
rule aggregate_round:
    input:
        unpack(round_inputs),
    output:
        runs="results/{name}/rounds/{round}/runs.parquet",
        curves="results/{name}/rounds/{round}/curves.parquet",
    log:
        "results/{name}/logs/aggregate_round_{round}.log",
    benchmark:
        "results/{name}/benchmarks/aggregate_round_{round}.tsv"
    conda:
        "../envs/skipinit.yaml"
    resources:
        mem_mb=4000,
        runtime=20,
    shell:
        "python -m skipinit aggregate --manifest {input.manifest} --round-manifest {input.earlier} "
        "--runs {output.runs} --curves {output.curves} > {log} 2>&1"


# The seeds round k adds where claims are still undecided, chosen from the runs of the rounds before it.
checkpoint add_seeds:
    input:
        unpack(seed_round_inputs),
    output:
        manifest="results/{name}/rounds/{round}/manifest.json",
        packs=directory("results/{name}/rounds/{round}/packs"),
    log:
        "results/{name}/logs/add_seeds_{round}.log",
    benchmark:
        "results/{name}/benchmarks/add_seeds_{round}.tsv"
    conda:
        "../envs/skipinit.yaml"
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python -m skipinit add-seeds --round {wildcards.round} --runs {input.runs} --curves {input.curves} "
        "--manifest {input.manifest} --round-manifest {input.earlier} --claims-config {input.claims:q} "
        "--out {output.manifest} > {log} 2>&1"
