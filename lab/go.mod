module pingpong/lab

go 1.26
