from django.contrib import admin

from classroom.models import Classroom, ClassroomLesson, Member


class ClassroomLessonInline(admin.TabularInline):
    model = ClassroomLesson
    extra = 1


@admin.register(Classroom)
class ClassroomAdmin(admin.ModelAdmin):
    list_display = ("name", "instructor", "join_code", "state", "starts_at", "ends_at")
    list_filter = ("state",)
    search_fields = ("name", "join_code", "instructor__username")
    inlines = [ClassroomLessonInline]


@admin.register(Member)
class MemberAdmin(admin.ModelAdmin):
    list_display = ("display_name", "classroom", "joined_at", "extra_minutes")
    search_fields = ("display_name", "classroom__name")
