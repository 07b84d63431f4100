"""Hybrid-Level Diffusion Fine-tuning (HLDF): the training loop.

    L = L_diffusion                          on most steps
    L = L_diffusion + w * L_color            every N steps, w = 1/M by default

L_color compares the per-channel mean and std of the training image with an image generated
*inside the training graph* from its caption (M DPM-Solver++ steps, CFG 4.5, VAE decode),
so its gradient reaches the DiT and T5 LoRA through every solver step. Nothing is reloaded
for it: the same modules, the same sampler as inference.

Runs unchanged under `accelerate launch`: each process trains on its share of every batch
and the LoRA gradients are averaged across processes after backward (the models are not
wrapped in DDP, whose hooks assume one forward per backward; a colour step makes 2M+1).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import resource
import signal
import sys
import threading
import time
from pathlib import Path

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from tqdm.auto import tqdm

from medart import buckets, checkpoints, color_stats, dpm_solver, hldf_plan, lora, tracking
from medart.config import TrainConfig
from medart.constants import SAMPLE_CLASSES
from medart.data import TrainData, load_examples
from medart.fileio import atomic_dir, atomic_write_bytes, atomic_write_text
from medart.losses import channel_moments, color_loss_to_moments, diffusion_loss
from medart.model_card import model_card, step_times
from medart.profiles import caption_limit, load_base
from medart.run_folder import RunFolder

log = logging.getLogger("medart.hldf")


class Trainer:
    """Holds the models, optimiser and data of one run; `run()` trains to the end."""

    def __init__(self, config: TrainConfig, command: str = "", progress=None, base=None, examples=None):
        """`base` and `examples` may be given ready-made (benchmarks); else they are loaded
        from `config.base_model` and `config.data`."""
        from accelerate import Accelerator

        tracking.check_available(config.report_to)  # before anything is loaded
        self.config = config
        self.progress = progress
        self.stop_requested = False
        self.tracker = None  # started by run_loop
        cuda = torch.cuda.is_available()
        precision = config.mixed_precision
        if precision == "auto":
            precision = "bf16" if cuda else "no"
        self.accelerator = Accelerator(mixed_precision=precision, cpu=not cuda,
                                       **tracking.accelerator_kwargs(config.report_to, config.output))
        self.device = self.accelerator.device
        self.weight_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)
        self.main = self.accelerator.is_main_process
        self.run = RunFolder(config.output)
        if not config.resume and self.run.metrics():
            raise ValueError(f"{self.run.path} already holds a training run; continue it with --resume latest "
                             "or give another --output")

        self.base = base or load_base(config.base_model, device=self.device, dtype=self.weight_dtype)
        config.resolution = config.resolution or self.base.resolution
        config.max_caption_tokens = caption_limit(self.base.kind, config.max_caption_tokens)
        if examples is None:
            local = Path(config.data).expanduser().is_dir()
            log.info("reading the training images and captions from %s%s", config.data,
                     " (a folder on this machine)" if local else " (a Hugging Face dataset)")
            examples = load_examples(config, self.base.tokenizer)
        self.data = TrainData(examples, config, config.resolution,
                              self.accelerator.process_index, self.accelerator.num_processes,
                              buckets.size_multiple(self.base))
        self.total_steps = config.max_steps or config.epochs * self.data.steps_per_epoch
        self.groups = self.data.groups()
        self.plan = hldf_plan.plan(config, self.total_steps, len(self.groups), device=self.device.type)
        config.hldf.every = self.plan.every  # the resolved N goes into config.yaml
        if config.validation_every is None:  # about ten points on the curves, at most 500 steps apart
            config.validation_every = min(500, max(1, self.total_steps // 10))
        self.group_moments = self._group_moments()
        # a class's colour step compares a set of its images with the class's statistics
        hl = config.hldf
        self.per_class = hl.color_per_class if hl.color_coverage != "batch" and hl.color_target == "group" else 1
        self.models = {"dit": self.base.transformer}
        torch.manual_seed(config.seed)  # LoRA initialisation: the same on every process and run
        params = lora.attach_base(self.base, config.lora)
        if config.lora.t5:
            self.models["t5"] = self.base.text_encoder
        self.params = [p for group in params.values() for p in group]
        if config.gradient_checkpointing:
            self.base.transformer.enable_gradient_checkpointing()
            self.base.vae.enable_gradient_checkpointing()
        self.optimizer = self._optimizer()
        # EMA of the LoRA weights (fp32), keyed like the checkpoint's trainable weights
        self.ema = ({k: v.clone().float() for k, v in checkpoints.trainable_state(self.models).items()}
                    if config.ema_decay > 0 else None)
        from diffusers import DDPMScheduler
        from diffusers.optimization import get_scheduler

        self.lr_scheduler = get_scheduler(
            config.lr_scheduler, self.optimizer, num_warmup_steps=config.lr_warmup_steps,
            num_training_steps=self.total_steps,
        )
        self.noise_scheduler = DDPMScheduler.from_config(self.base.scheduler.config)
        self.cache_dir = self.run.path / "cache"
        self.step = 0
        self.data_info = {"source": config.data, "images": len(examples),
                          "processes": self.accelerator.num_processes,
                          "classes": {g: len(idx) for g, idx in self.groups.items()},
                          "hldf_plan": self.plan.as_dict(),
                          "keys": sorted(ex.key for ex in examples)}
        if config.buckets:
            self.data_info["buckets"] = {buckets.name(s): n for s, n in self.data.bucket_counts().items()}
            log.info("%s", buckets.summary(self.data.bucket_counts(), config.batch_size, self.accelerator.num_processes))
        if self.main:
            self.run.start(config, command, self.data_info, self.plan)
        if config.resume:
            self._resume(config.resume)

    # -- setup -------------------------------------------------------------------------
    def _optimizer(self):
        c = self.config
        if c.adam_8bit:
            if not torch.cuda.is_available():
                raise ValueError("8-bit AdamW needs a CUDA GPU (bitsandbytes); drop --adam-8bit on this machine.")
            try:
                import bitsandbytes as bnb
            except ImportError:
                raise ValueError("8-bit AdamW needs bitsandbytes: pip install bitsandbytes") from None
            return bnb.optim.AdamW8bit(self.params, lr=c.learning_rate, weight_decay=c.weight_decay)
        return torch.optim.AdamW(self.params, lr=c.learning_rate, weight_decay=c.weight_decay)

    def _resume(self, resume: str) -> None:
        checkpoints.clean_partial(self.run.checkpoints)
        path = checkpoints.find(resume, self.run.checkpoints)
        state = checkpoints.load(path, self.models, self.optimizer, self.lr_scheduler, self.ema)
        self.step = state["step"]
        if self.main:
            self.run.truncate_metrics(self.step)
        log.info("resumed from %s at step %d", path, self.step)

    def _group_moments(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Per class: the average per-channel mean and std of its training images (whole image
        at the training resolution, [-1, 1]), the colour target of `target: group`."""
        found = {}
        for group, idx in self.groups.items():  # one image at a time: a class may hold thousands
            moments = [channel_moments(self.data.full_view(self.data.examples[i])[None]) for i in idx]
            found[group] = (torch.cat([m for m, _ in moments]).mean(0), torch.cat([s for _, s in moments]).mean(0))
        return found

    # -- pieces of a step --------------------------------------------------------------
    def _autocast(self):
        if self.weight_dtype == torch.float32:
            return torch.autocast("cpu", enabled=False)
        return torch.autocast(self.device.type, dtype=self.weight_dtype)

    def _latents(self, examples, pixels, epoch: int) -> torch.Tensor:
        """VAE latents of the batch, from the cache where the pixels are deterministic."""
        vae = self.base.vae
        means, stds = [], []
        for ex, px in zip(examples, pixels):
            cached = self.cache_dir / "latents" / f"{ex.key}-{self.data.cache_tag(ex)}.safetensors"
            use_cache = self.config.cache_latents and self.data.deterministic(ex)
            if use_cache and cached.exists():
                mean, std = _load_tensors(cached)
            else:
                with torch.no_grad():
                    dist = vae.encode(px[None].to(self.device, vae.dtype)).latent_dist
                mean, std = dist.mean[0].float().cpu(), dist.std[0].float().cpu()
                if use_cache:
                    _save_tensors(cached, (mean, std))
            means.append(mean)
            stds.append(std)
        mean = torch.stack(means).to(self.device)
        std = torch.stack(stds).to(self.device)
        # The same draw as diffusers' DiagonalGaussianDistribution.sample().
        latents = mean + std * torch.randn(mean.shape, device=self.device, dtype=mean.dtype)
        return (latents * vae.config.scaling_factor).to(self.weight_dtype)

    def _text(self, captions: list[str]):
        """T5 embeddings; cached on disk when the text encoder is frozen (no T5 LoRA)."""
        tok, enc = self.base.tokenizer, self.base.text_encoder
        if self.config.lora.t5 or not self.config.cache_text:
            return dpm_solver.encode_prompts(tok, enc, captions, self.device, self.base.max_caption_tokens)
        embeds, masks = [], []
        for caption in captions:
            key = hashlib.sha256(caption.encode()).hexdigest()[:20]
            cached = self.cache_dir / "text" / f"{key}.safetensors"
            if cached.exists():
                e, m = _load_tensors(cached)
            else:
                with torch.no_grad():
                    e, m = dpm_solver.encode_prompts(tok, enc, [caption], self.device, self.base.max_caption_tokens)
                e, m = e[0].cpu(), m[0].cpu()
                _save_tensors(cached, (e, m))
            embeds.append(e)
            masks.append(m)
        return torch.stack(embeds).to(self.device, self.base.dtype), torch.stack(masks).to(self.device)

    def _grad_vector(self) -> torch.Tensor:
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten().float() for p in self.params])

    def _mean(self, value: torch.Tensor) -> float:
        """A loss averaged over all processes (the number a single big batch would give)."""
        value = value.detach().float().reshape(1)
        if self.accelerator.num_processes > 1:
            value = self.accelerator.reduce(value, reduction="mean")
        return value.item()

    def _average_gradients(self) -> None:
        if self.accelerator.num_processes == 1:
            return
        flat = self._grad_vector()
        flat = self.accelerator.reduce(flat, reduction="mean")
        offset = 0
        for p in self.params:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).to(p.dtype)
            offset += n

    def train_step(self) -> dict:
        """One optimiser step (0-based `self.step` before, +1 after); returns its metrics row."""
        c = self.config
        t0 = time.perf_counter()
        # Noise and timesteps come from a seed per (run seed, step, process): a resumed run
        # draws exactly what an uninterrupted one would, on any number of processes.
        torch.manual_seed(_step_seed(c.seed, self.step, self.accelerator.process_index))
        examples, pixels, epoch = self.data.batch(self.step)
        pixels = pixels.to(self.device)
        drops = caption_drops(c.seed, self.step, self.accelerator.process_index, len(examples), c.caption_dropout)
        # a dropped caption is the empty one, the unconditional prompt of the sampler's CFG
        captions = ["" if drop else ex.caption for ex, drop in zip(examples, drops)]
        colour_step = self.plan.is_colour_step(self.step)
        row = {"step": self.step + 1, "epoch": epoch}
        if c.caption_dropout > 0:
            row["captions_dropped"] = sum(drops)

        latents = self._latents(examples, pixels, epoch)
        noise = torch.randn(latents.shape, device=self.device, dtype=latents.dtype)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (latents.shape[0],), device=self.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, t)
        with self._autocast():
            embeds, mask = self._text(captions)
            out = self.base.transformer(noisy, encoder_hidden_states=embeds, encoder_attention_mask=mask, timestep=t,
                                        added_cond_kwargs=dpm_solver.size_conditions(self.base.transformer, noisy),
                                        return_dict=False)[0]
            loss = diffusion_loss(out, noise)
        # the paper's colour step reuses these embeddings (unless a caption was dropped: colour
        # steps generate from the real captions), so their graph must outlive backward
        reuse = colour_step and c.hldf.color_coverage == "batch" and not any(drops)
        loss.backward(retain_graph=reuse)
        row["loss"] = self._mean(loss)

        if colour_step:
            text = (embeds, mask) if reuse else None
            row.update(self._colour_step(examples, pixels, text, epoch, tuple(latents.shape[1:])))
        else:
            self._average_gradients()
            row["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.params, c.max_grad_norm).item()
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self._update_ema()
        row["lr"] = self.lr_scheduler.get_last_lr()[0]
        row["seconds"] = time.perf_counter() - t0
        row["peak_mem_mb"] = peak_memory_mb(self.device)
        return row

    def _colour_batch(self, examples, pixels, text, epoch: int):
        """What one colour step generates and compares: (captions' embeds, mask, target mean,
        target std, group names). `coverage: batch` takes the batch's own captions (the
        paper; `text`: the diffusion step's embeddings of them, so that one T5 forward serves
        both, or None where caption dropout emptied some); `rotate` one caption of the next
        class in turn; `groups` one caption of every class (this process's share of them).
        Captions here are never dropped: a colour step needs its class's caption."""
        hl = self.config.hldf
        if hl.color_coverage == "batch":
            chosen = list(zip(examples, pixels))
            if text is None:
                with self._autocast():
                    text = self._text([ex.caption for ex in examples])
        else:
            names = list(self.groups)
            k = self.plan.colour_steps_before(self.step)
            world, rank = self.accelerator.num_processes, self.accelerator.process_index
            if hl.color_coverage == "rotate":  # one class per process, the classes in turn
                names = [names[(k * world + rank) % len(names)]]
            else:
                if len(names) > hl.max_groups:  # take the classes in turns, max_groups at a time
                    start = (k * hl.max_groups) % len(names)
                    names = [names[(start + j) % len(names)] for j in range(hl.max_groups)]
                names = [names[(j * world + rank) % len(names)] for j in range(math.ceil(len(names) / world))]
            gen = torch.Generator().manual_seed(_step_seed(self.config.seed, self.step, rank) + 1)
            chosen = []
            for name in names:  # per class, `per_class` of its images (their captions), drawn anew each step
                idx = self.groups[name]
                for _ in range(self.per_class):
                    i = idx[int(torch.randint(len(idx), (1,), generator=gen))]
                    ex = self.data.examples[i]
                    chosen.append((ex, self.data.pixels(ex, epoch, i).to(self.device)))
            with self._autocast():
                text = self._text([ex.caption for ex, _ in chosen])
        groups = [ex.group for ex, _ in chosen][::self.per_class]  # one target per set of per_class images
        if hl.color_target == "group":
            mean = torch.stack([self.group_moments[g][0] for g in groups])
            std = torch.stack([self.group_moments[g][1] for g in groups])
        else:
            if len({px.shape for _, px in chosen}) == 1:
                mean, std = channel_moments(torch.stack([px for _, px in chosen]))
            else:  # images of several buckets: moments image by image
                mean, std = (torch.cat(m) for m in zip(*(channel_moments(px[None]) for _, px in chosen)))
        return text[0], text[1], mean.to(self.device), std.to(self.device), groups

    def _colour_step(self, examples, pixels, text, epoch: int, latent_shape: tuple) -> dict:
        """Generate in the training graph, backpropagate the colour loss, combine the two
        gradients as `hldf.balance` says. The diffusion gradient is already in `.grad`."""
        c, hl = self.config, self.config.hldf
        t0 = time.perf_counter()
        self._average_gradients()
        diff_grads = [None if p.grad is None else p.grad.clone() for p in self.params]
        diff_norm = _norm(diff_grads)
        self.optimizer.zero_grad(set_to_none=True)
        generator_ctx = (dpm_solver.block_checkpointing_off(self.base.transformer)
                         if c.gradient_checkpointing else contextlib.nullcontext())
        with self._autocast(), generator_ctx:
            embeds_c, mask_c, mean, std, groups = self._colour_batch(examples, pixels, text, epoch)
            if c.buckets and hl.color_coverage != "batch":  # compared with classes: their dominant bucket's size
                w, h = self.data.dominant_size(groups)
                latent_shape = (latent_shape[0], h // buckets.vae_factor(self.base), w // buckets.vae_factor(self.base))
            neg, neg_mask = self._text([""] * embeds_c.shape[0])
            shape = (embeds_c.shape[0], *latent_shape)
            start = torch.randn(shape, device=self.device, dtype=self.weight_dtype)
            generated = dpm_solver.sample(
                self.base.transformer, self.base.scheduler, start, embeds_c, mask_c, neg, neg_mask,
                steps=hl.color_steps, cfg=hl.cfg, grad=True, checkpoint=c.gradient_checkpointing,
                grad_steps=hl.color_grad_steps,
            )
            image = dpm_solver.decode(self.base.vae, generated.to(self.base.vae.dtype))
            lc = color_loss_to_moments(image, mean, std, reduction=hl.reduction, per_target=self.per_class)
            # backward inside the context: recomputation must see the same model settings
            (hl.color_weight * lc).backward()
        self._average_gradients()
        colour_grads = [p.grad for p in self.params]
        colour_norm = _norm(colour_grads)
        if hl.color_balance == "separate":  # each part clipped on its own, then added
            scale_c = min(1.0, c.max_grad_norm / (colour_norm + 1e-6))
            scale_d = min(1.0, c.max_grad_norm / (diff_norm + 1e-6))
        else:  # "joint", the paper: add, then clip the sum
            scale_c = scale_d = 1.0
        for p, d in zip(self.params, diff_grads):
            g = p.grad * scale_c if p.grad is not None else None
            if d is not None:
                g = d * scale_d if g is None else g + d * scale_d
            p.grad = g
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, c.max_grad_norm).item()
        return {"color_loss": self._mean(lc), "color_weight": hl.color_weight, "color_groups": groups,
                "grad_norm_diffusion": diff_norm, "grad_norm_color": colour_norm, "color_scale": scale_c,
                "grad_norm": grad_norm, "color_seconds": time.perf_counter() - t0,
                **({"color_size": buckets.name(image.shape[:-3:-1])} if c.buckets else {})}

    def _named_params(self):
        for prefix, model in self.models.items():
            for name, p in model.named_parameters():
                if p.requires_grad:
                    yield f"{prefix}.{name}", p

    @torch.no_grad()
    def _update_ema(self) -> None:
        """ema = d * ema + (1 - d) * weights, d = min(ema_decay, (1 + step) / (10 + step)): the
        usual warm-up, so early weights do not linger in a short run."""
        if self.ema is None:
            return
        d = min(self.config.ema_decay, (1 + self.step) / (10 + self.step))
        for key, p in self._named_params():
            self.ema[key].mul_(d).add_(p.detach().float().to(self.ema[key].device), alpha=1 - d)

    @contextlib.contextmanager
    def ema_weights(self):
        """The EMA weights in the models for the block (validation, export), the trained ones after."""
        if self.ema is None:
            yield
            return
        saved = {}
        with torch.no_grad():
            for key, p in self._named_params():
                saved[key] = p.detach().clone()
                p.copy_(self.ema[key].to(p.device, p.dtype))
        try:
            yield
        finally:
            with torch.no_grad():
                for key, p in self._named_params():
                    p.copy_(saved[key])

    # -- validation, checkpoints, export ----------------------------------------------
    def validation_prompts(self) -> list[tuple[str, str | None]]:
        """(prompt, class) pairs: the configured prompts (class known when a prompt is some
        training caption), else the first caption of each class, up to SAMPLE_CLASSES classes."""
        by_caption = {ex.caption: ex.group for ex in self.data.examples}
        if self.config.validation_prompts:
            return [(p, by_caption.get(p)) for p in self.config.validation_prompts]
        return [(self.data.examples[idx[0]].caption, g) for g, idx in list(self.groups.items())[:SAMPLE_CLASSES]]

    def reference_stats(self) -> dict[str, dict]:
        """Per class, the colour statistics of its training images (whole, at the training
        resolution), in `color_stats`' terms ([0, 1]): what each class's validation samples are
        measured against. The same numbers as the class targets (one pass over the images)."""
        found = {}
        for group, (mean, std) in self.group_moments.items():
            stats = {}
            for i, c in enumerate(color_stats.CHANNELS):
                stats[f"mean_{c}"] = (float(mean[i]) + 1) / 2
                stats[f"std_{c}"] = float(std[i]) / 2
            found[group] = stats
        return found

    @torch.no_grad()
    def samples(self) -> dict[str, float]:
        """Fixed-seed validation images of this step (samples/step-N/); returns each class's
        colour distance (`color_stats.moment_distance`) to its training images."""
        with self.ema_weights():
            return self._samples()

    def _samples(self) -> dict[str, float]:
        pairs = self.validation_prompts()
        prompts = [p for p, _ in pairs]
        seeds = list(range(len(prompts)))
        images = []
        for prompt, seed in zip(prompts, seeds):
            start = dpm_solver.initial_latents(self.base, 1, self.config.resolution, torch.Generator().manual_seed(seed))
            with self._autocast():
                cond = dpm_solver.conditioning(self.base, [prompt])
                latents = dpm_solver.sample(self.base.transformer, self.base.scheduler, start, *cond,
                                            steps=self.config.validation_steps, cfg=self.config.hldf.cfg)
                images += dpm_solver.to_pil(dpm_solver.decode(self.base.vae, latents.to(self.base.vae.dtype)))
        self.run.save_samples(self.step, images, prompts, seeds, [g for _, g in pairs])
        if self.tracker is not None:
            self.tracker.log_samples(self.step, images, prompts)
        per_class: dict[str, list] = {}
        for (_, group), image in zip(pairs, images):
            if group is not None:
                per_class.setdefault(group, []).append(image)
        reference = self.reference_stats()
        return {g: color_stats.moment_distance(color_stats.set_stats(ims), reference[g]) for g, ims in per_class.items()}

    def check_in_sync(self) -> None:
        """Every process must hold the same LoRA weights (they apply the same averaged gradients)."""
        if self.accelerator.num_processes == 1:
            return
        import torch.distributed as dist

        local = torch.cat([p.detach().flatten().float() for p in self.params])
        spread = local.clone()
        dist.all_reduce(spread, op=dist.ReduceOp.MAX)
        low = local.clone()
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        gap = (spread - low).abs().max().item()
        if gap > 1e-6:
            raise RuntimeError(f"processes disagree on the LoRA weights by {gap:g}; gradients were not synchronised")

    def checkpoint(self) -> Path:
        return checkpoints.save(
            self.run.checkpoints, self.step, self.models, self.optimizer, self.lr_scheduler,
            {"total_steps": self.total_steps, "epoch": self.step // self.data.steps_per_epoch},
            self.config.checkpoints_keep, self.ema, self.ema_weights,
        )

    def export(self) -> Path:
        with atomic_dir(self.run.adapter, prefix=".tmp-adapter-") as tmp:
            with self.ema_weights():
                for name, model in self.models.items():
                    lora.save(model, tmp / name)
            atomic_write_text(tmp / "README.md", str(model_card(self.run.path)))
        return self.run.adapter

    # -- the loop ----------------------------------------------------------------------
    def request_stop(self, *_) -> None:
        """Finish the current step, write a checkpoint, exit (SIGTERM / SIGINT)."""
        self.stop_requested = True

    def _stop_now(self) -> bool:
        """Read the stop flag once per step, the same on every process.

        A signal can land anywhere in the step; reading the flag once and acting on that one
        reading makes "stop" and "write the checkpoint of this step" the same decision (a
        signal arriving after the checkpoint test would otherwise end the loop without one).
        Across processes the flag is OR-ed, so all ranks stop at the same step.
        """
        flag = torch.tensor([float(self.stop_requested)], device=self.accelerator.device)
        if self.accelerator.num_processes > 1:
            flag = self.accelerator.reduce(flag, reduction="sum")
        return bool(flag.item() > 0)

    def run_loop(self) -> Path:
        c = self.config
        self.tracker = tracking.Tracker(self.accelerator, c, self.run.path, self.step if c.resume else None)
        try:
            return self._run_loop()
        finally:
            self.tracker.end()

    def _run_loop(self) -> Path:
        c = self.config
        if self.main:
            self.run.status("running", step=self.step, total=self.total_steps)
            log.info("%s", self.plan.summary())
            if self.plan.enabled and self.plan.colour_steps == 0:  # an explicit N wins, but not silently
                print(f"warning: {self.plan.summary()}", file=sys.stderr, flush=True)
            if self.step == 0:
                row = {"step": 0, "color_distance": self.samples()}
                self.run.log_metrics(row)
                self.tracker.log_row(row)
        bar = tqdm(total=self.total_steps, initial=self.step, desc="HLDF", unit="step",
                   disable=None if self.main else True, dynamic_ncols=True)  # None: off when not a terminal
        start_time, start_step, last = time.perf_counter(), self.step, {}
        try:
            stop = False
            while self.step < self.total_steps and not stop:
                last = self.train_step()
                stop = self._stop_now()
                if not math.isfinite(last["loss"]):
                    raise FloatingPointError(
                        f"loss became {last['loss']} at step {self.step}; lower the learning rate or the colour weight"
                    )
                done = self.step - start_step
                eta = (time.perf_counter() - start_time) / done * (self.total_steps - self.step)
                if self.main:
                    if self.step % c.validation_every == 0 or self.step == self.total_steps:
                        last["color_distance"] = self.samples()
                    self.run.log_metrics(last)
                    self.tracker.log_row(last)
                    self.run.status("running", step=self.step, total=self.total_steps, eta_seconds=eta,
                                    loss=last["loss"])
                if self.step % c.checkpoint_every == 0 or self.step == self.total_steps or stop:
                    self.check_in_sync()
                    if self.main:
                        self.checkpoint()
                    self.accelerator.wait_for_everyone()
                bar.set_postfix(loss=f"{last['loss']:.4f}", **({"color": f"{last['color_loss']:.4f}"}
                                                               if "color_loss" in last else {}))
                bar.update(1)
                if self.progress:
                    self.progress(self.step, self.total_steps, last)
        finally:
            bar.close()
        if self.main:
            if self.step < self.total_steps:  # left the loop early: a stop was asked for
                self.run.status("stopped", step=self.step, total=self.total_steps)
            else:
                self.export()
                final = last.get("color_distance") or {}
                for group, value in final.items():
                    log.info("colour distance of %s's samples to its training images: %.4f", group, value)
                times = step_times(self.run.metrics())
                log.info("%d colour steps took %.1f s of %.1f s of training steps", times["colour_steps"],
                         times["colour_seconds"], times["seconds"])
                self.run.status("done", step=self.step, total=self.total_steps, color_distance=final, **times)
        return self.run.path


def _step_seed(seed: int, step: int, rank: int) -> int:
    digest = hashlib.sha256(f"{seed}/{step}/{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def caption_drops(seed: int, step: int, rank: int, n: int, p: float) -> list[bool]:
    """Which of the `n` examples of 0-based step `step` on process `rank` train with the empty
    caption (probability `p` each). Drawn from the step's own seed on a generator of its own,
    never from the global random state: a resumed run drops exactly the captions an
    uninterrupted one would, and p = 0 draws nothing (the run is what it was without it)."""
    if p <= 0:
        return [False] * n
    gen = torch.Generator().manual_seed(_step_seed(seed, step, rank) + 2)  # + 1: the colour step's draws
    return [bool(x < p) for x in torch.rand(n, generator=gen)]


def _norm(grads) -> float:
    """The L2 norm of a list of gradients (None counts as zero)."""
    total = sum(float(g.detach().float().pow(2).sum()) for g in grads if g is not None)
    return math.sqrt(total)


def _save_tensors(path: Path, tensors) -> None:
    """A cache entry (a few tensors) as safetensors, written atomically; nothing is pickled."""
    atomic_write_bytes(path, save_tensors({str(k): t.contiguous() for k, t in enumerate(tensors)}))


def _load_tensors(path: Path) -> tuple[torch.Tensor, ...]:
    state = load_tensors(path.read_bytes())
    return tuple(state[str(k)] for k in range(len(state)))


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak RSS on Linux (KiB)


def train(config: TrainConfig, command: str = "", progress=None) -> Path:
    """Train a run to the end (or until SIGTERM/SIGINT asks it to stop); returns the run folder."""
    run = RunFolder(config.output)
    run.path.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(run.path / "log.txt")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("medart").addHandler(handler)
    logging.getLogger("medart").setLevel(logging.INFO)
    try:
        trainer = Trainer(config, command, progress)
        previous = {}
        if threading.current_thread() is threading.main_thread():
            previous = {s: signal.signal(s, trainer.request_stop) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            return trainer.run_loop()
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
    except Exception as e:
        log.exception("training failed")
        run.status("failed", error=f"{type(e).__name__}: {e}")
        raise
    finally:
        logging.getLogger("medart").removeHandler(handler)
        handler.close()
