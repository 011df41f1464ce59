"""The roles a classroom grant names (the token's `role` claim): who may send what follows from them."""

from __future__ import annotations

TEACHER = "teacher"
STUDENT = "student"
ROLES = (TEACHER, STUDENT)
