rule prepare_data:
    input:
        source_files(),
    output:
        data="resources/datasets/{dataset}.npz",
        checksum="resources/datasets/{dataset}.npz.sha256",
    log:
        "logs/prepare_data/{dataset}.log",
    benchmark:
        "benchmarks/prepare_data/{dataset}.tsv"
    conda:
        "../envs/skipinit.yaml"
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        source=data_source_flags(),
    shell:
        "python -m skipinit prepare-data {params.source} " "--name {wildcards.dataset} --out {output.data} > {log} 2>&1"
