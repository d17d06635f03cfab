rule signal:
    input:
        data=dataset_file(),
    output:
        table="results/{name}/signal.parquet",
        png=report(
            "results/{name}/figures/signal_propagation.png",
            caption="../report/signal.rst",
            category="Signal propagation",
        ),
        pdf="results/{name}/figures/signal_propagation.pdf",
    log:
        "results/{name}/logs/signal.log",
    benchmark:
        "results/{name}/benchmarks/signal.tsv"
    conda:
        "../envs/skipinit.yaml"
    threads: config["threads"]
    resources:
        mem_mb=6000,
        runtime=60,
    params:
        models=signal_models(),
        settings=config["signal"],
    shell:
        "python -m skipinit signal --models {params.models} --dataset {input.data} "
        "--linear-depth {params.settings[linear_depth]} --conv-depth {params.settings[conv_depth]} "
        "--seeds {params.settings[seeds]} --linear-width {params.settings[linear_width]} "
        "--conv-width {params.settings[conv_width]} --batch-size {params.settings[batch_size]} --profile {wildcards.name} "
        "--out {output.table} --figure-png {output.png} --figure-pdf {output.pdf} > {log} 2>&1"
