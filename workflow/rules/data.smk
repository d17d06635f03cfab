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
        source=config["data_source"],
        path=config["data_path"] or "",
        download="--download" if config["data_download"] else "--no-download",
        synthetic=config["synthetic"],
    shell:
        "python -m skipinit prepare-data --source {params.source} --path {params.path:q} "
        "--name {wildcards.dataset} --out {output.data} {params.download} "
        "--synthetic-train-size {params.synthetic[train_size]} "
        "--synthetic-test-size {params.synthetic[test_size]} "
        "--synthetic-seed {params.synthetic[seed]} > {log} 2>&1"
