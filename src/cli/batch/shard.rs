//! Shards: a deterministic share of a batch's jobs for one of N processes or machines.
//! Shard I of N (1-based) runs the I-th of N contiguous runs of jobs, so consecutive
//! jobs on one model stay together. Inside a SLURM array job or a Kubernetes Indexed Job
//! the shard is read from the environment.

use anyhow::{Result, bail};

/// Shard `index` of `count` (1-based, as `--shard 2/4` writes it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Which share, 1..=count.
    pub index: usize,
    /// How many shares.
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("--shard {s:?}: expected I/N with 1 <= I <= N, e.g. 2/4");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The positions of this shard's jobs among `total`.
    pub fn range(&self, total: usize) -> std::ops::Range<usize> {
        (self.index - 1) * total / self.count..self.index * total / self.count
    }

    /// The shard the environment names: a SLURM array task (`SLURM_ARRAY_TASK_ID` counted
    /// from `SLURM_ARRAY_TASK_MIN`, `SLURM_ARRAY_TASK_COUNT` tasks) or a Kubernetes Indexed
    /// Job (`JOB_COMPLETION_INDEX` from 0, with the count in `STIPPLE_SHARD_COUNT`, which
    /// the Job sets to its `completions`). None outside both.
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Result<Option<Shard>> {
        let num = |name: &str| -> Result<Option<usize>> {
            match var(name) {
                None => Ok(None),
                Some(v) => match v.trim().parse() {
                    Ok(n) => Ok(Some(n)),
                    Err(_) => bail!("{name}={v:?} is not a whole number"),
                },
            }
        };
        let (index, count, source) = if let Some(task) = num("SLURM_ARRAY_TASK_ID")? {
            let Some(count) = num("SLURM_ARRAY_TASK_COUNT")? else { bail!("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not") };
            let min = num("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
            if task < min {
                bail!("SLURM_ARRAY_TASK_ID {task} is below SLURM_ARRAY_TASK_MIN {min}");
            }
            (task - min, count, "the SLURM array (SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_COUNT; submit with --array=0-N or 1-N, no step)")
        } else if let Some(index) = num("JOB_COMPLETION_INDEX")? {
            let Some(count) = num("STIPPLE_SHARD_COUNT")? else {
                bail!("JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job): set STIPPLE_SHARD_COUNT to the Job's completions, or pass --shard I/N")
            };
            (index, count, "the Indexed Job (JOB_COMPLETION_INDEX, STIPPLE_SHARD_COUNT)")
        } else {
            return Ok(None);
        };
        if index >= count {
            bail!("task {index} (counted from 0) is not below the task count {count} given by {source}");
        }
        Ok(Some(Shard { index: index + 1, count }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_job_once() {
        for total in [0, 1, 5, 100, 101] {
            for count in 1..=7 {
                let mut seen = vec![0; total];
                for index in 1..=count {
                    for i in (Shard { index, count }).range(total) {
                        seen[i] += 1;
                    }
                }
                assert!(seen.iter().all(|&n| n == 1), "{total} jobs, {count} shards");
            }
        }
        assert_eq!("2/4".parse::<Shard>(), Ok(Shard { index: 2, count: 4 }));
        for bad in ["0/4", "5/4", "1", "a/b", "1/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_environment_names_the_shard() {
        let env = |pairs: &'static [(&'static str, &'static str)]| move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string());
        assert_eq!(Shard::from_env(env(&[])).unwrap(), None);
        assert_eq!(Shard::from_env(env(&[("SLURM_ARRAY_TASK_ID", "2"), ("SLURM_ARRAY_TASK_COUNT", "4"), ("SLURM_ARRAY_TASK_MIN", "0")])).unwrap(), Some(Shard { index: 3, count: 4 }));
        assert_eq!(Shard::from_env(env(&[("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_COUNT", "4"), ("SLURM_ARRAY_TASK_MIN", "1")])).unwrap(), Some(Shard { index: 4, count: 4 }));
        assert_eq!(Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "0"), ("STIPPLE_SHARD_COUNT", "2")])).unwrap(), Some(Shard { index: 1, count: 2 }));
        assert!(Shard::from_env(env(&[("JOB_COMPLETION_INDEX", "0")])).unwrap_err().to_string().contains("STIPPLE_SHARD_COUNT"));
        assert!(Shard::from_env(env(&[("SLURM_ARRAY_TASK_ID", "4"), ("SLURM_ARRAY_TASK_COUNT", "4")])).is_err());
    }
}
