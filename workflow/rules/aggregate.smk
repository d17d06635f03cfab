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
    params:
        plan=plan_json(),
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../envs/skipinit.yaml"
    shell:
        "python -m skipinit aggregate {input:q} --plan {params.plan:q} "
        "--runs {output.runs} --curves {output.curves} > {log} 2>&1"
