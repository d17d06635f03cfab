rule train:
    input:
        data=training_data,
        # The dataset's size checked against the profile's subsets and batch sizes; ancient: a profile edit
        # reruns that check alone, never the training it guards.
        sizes=checked_sizes,
        # Its pack file's folder comes with the manifest; ancient: a profile edit retrains no finished pack.
        manifest=ancient("results/{name}/manifest.json"),
    output:
        "results/{name}/cells/{dataset}/{net}/{model}/{hyper}/{members}/result.json",
    log:
        "results/{name}/logs/train/{dataset}/{net}/{model}/{hyper}/{members}.log",
    benchmark:
        "results/{name}/benchmarks/train/{dataset}/{net}/{model}/{hyper}/{members}.tsv"
    conda:
        "../envs/skipinit.yaml"
    threads: config["threads"]
    resources:
        gpu=config["resources"]["gpu"],
        mem_mb=config["resources"]["train_mem_mb"],
        # Minutes: the compute plan's prediction for this job's cells (resources.train_runtime: auto).
        runtime=train_runtime,
        # One training process: SLURM group jobs run theirs one after another (profile: train_jobs=1 per job).
        train_jobs=1,
    params:
        cells=pack_file,
        checkpoint="results/{name}/checkpoints/{dataset}/{net}/{model}/{hyper}/{members}.pt",
        engine=engine_flags(),
    shell:
        "python -m skipinit train --cells-file {params.cells:q} --dataset {input.data:q} "
        "--out {output} --checkpoint {params.checkpoint} {params.engine} > {log} 2>&1"
