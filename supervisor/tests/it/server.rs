//! The page before it faces the internet (issue 12, item 4).

/// The unit bounds the supervisor's memory and tasks (a leak or a flood cannot take the Pi).
#[test]
fn the_unit_bounds_memory_and_tasks() {
    let unit = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../overlays/etc/systemd/system/hearth-supervisor.service"),
    )
    .unwrap();
    let value = |key: &str| {
        unit.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key}= is not set"))
            .trim()
            .to_string()
    };
    let mem = value("MemoryMax");
    let mb: u64 = mem
        .strip_suffix('M')
        .expect("MemoryMax in M")
        .parse()
        .unwrap();
    assert!(
        (64..=256).contains(&mb),
        "MemoryMax={mem}: 5 to 20 times the 12 MB it uses, under a quarter of a 1 GB Pi"
    );
    let tasks: u64 = value("TasksMax").parse().unwrap();
    assert!((64..=512).contains(&tasks), "TasksMax={tasks}");
}
