localrules:
    manifest,


# The resolved profile (skipinit.profile.resolve): which experiments use which cell, read by aggregation.
rule manifest:
    input:
        PROFILE_FILES,
    output:
        "results/{name}/manifest.json",
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
        "python -m skipinit manifest {input:q} --overrides {params.overrides:q} --out {output} > {log} 2>&1"


rule aggregate:
    input:
        packs=pack_results(),
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
        "python -m skipinit aggregate {input.packs:q} --manifest {input.manifest} "
        "--runs {output.runs} --curves {output.curves} > {log} 2>&1"
