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
        # Every pack's result.json; the command derives the same list from the manifest (no command-line limit).
        packs=pack_results,
        manifest="results/{name}/manifest.json",
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
        "python -m skipinit aggregate --manifest {input.manifest} "
        "--runs {output.runs} --curves {output.curves} > {log} 2>&1"
