"""GAN quality metrics (FID, KID, precision/recall, IS, PPL) as StyleGAN2-ADA defines them;
`metrics.metric_main` holds the registry and `calc_metric` / `report_metric`."""
