rule aggregate:
    input:
        pack_results(),
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
    params:
        plan=plan_json(),
    shell:
        "python -m skipinit aggregate {input:q} --plan {params.plan:q} "
        "--runs {output.runs} --curves {output.curves} > {log} 2>&1"
