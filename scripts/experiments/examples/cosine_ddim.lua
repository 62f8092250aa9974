-- cosine_ddim.lua: DDIM with the cosine noise schedule (squaredcos_cap_v2, Nichol & Dhariwal) and
-- trailing timestep spacing.  As a training scheduler it receives the run's noise config
-- ({num_train_timesteps=, prediction_type=, ...}); as a sampler, the trained model's config.
-- Use: --scheduler scripts/experiments/examples/cosine_ddim.lua (or --sample-scheduler, or sample.lua --scheduler)
return function(config)
  config.beta_schedule = 'squaredcos_cap_v2'
  config.timestep_spacing = 'trailing'
  return ddpm.schedulers.DDIMScheduler.from_config(config)
end
