use lock_runtime::{LockError, distributed_lock};

struct Point {
    x: i32,
    y: i32,
}

#[distributed_lock(key = "point:<x>")]
async fn settle(Point { x, y }: Point) -> Result<i32, LockError> {
    Ok(x + y)
}

fn main() {}
